"""The service under test serves a real model, trained and promoted in the session's own store."""

from __future__ import annotations

import importlib

import pytest
from starlette.testclient import TestClient

from training import pipeline, registry
from training.settings import Settings


@pytest.fixture(scope="session")
def production_tag(tmp_path_factory) -> str:
    tmp = tmp_path_factory.mktemp("service-model")
    prod = registry.production("sales")
    if prod is not None:
        return str(prod.tag)
    ctx = pipeline.Context.from_settings(
        Settings(work_dir=tmp / "work", reports_dir=tmp / "reports")
    )
    tag = pipeline.run_all(ctx)
    registry.promote(tag)
    return tag


@pytest.fixture(scope="session")
def service_module(production_tag):
    return importlib.import_module("service")


@pytest.fixture(scope="session")
def client(service_module):
    with TestClient(service_module.Predictor.to_asgi(), raise_server_exceptions=False) as c:
        yield c


@pytest.fixture
def record(service_module) -> dict:
    return service_module.MODEL.schema.example_record()

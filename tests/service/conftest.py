"""The service under test serves a real model, trained and promoted in the session's own store."""

from __future__ import annotations

import importlib

import pytest
from starlette.testclient import TestClient


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

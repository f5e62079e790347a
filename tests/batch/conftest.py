"""Batch scoring runs on a real Spark in local mode, with models trained in the session's store."""

from __future__ import annotations

import pytest

from core.settings import Settings
from training import pipeline


@pytest.fixture(scope="session")
def cancer_tag(tmp_path_factory) -> str:
    """The brought-in classifier, registered (not promoted) in the session's store."""
    tmp = tmp_path_factory.mktemp("cancer-model")
    settings = Settings(model="cancer", work_dir=tmp / "work", reports_dir=tmp / "reports")
    return pipeline.run_all(pipeline.Context.from_settings(settings))

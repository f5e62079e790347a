"""The process `make monitor` compares drift in (monitoring/drift.py Worker): a failed warm-up
import (a broken Evidently install) must not leave a task waiting forever."""

from __future__ import annotations

import pytest

from monitoring import drift


def test_a_worker_whose_warm_up_import_fails_still_runs_tasks_and_reports_their_errors():
    with drift.Worker(warm="no_such_module_here") as worker:
        assert worker.submit(int, "42").result(timeout=60) == 42
        with pytest.raises(ModuleNotFoundError, match="no_such_module_here"):
            worker.submit(__import__, "no_such_module_here").result(timeout=60)

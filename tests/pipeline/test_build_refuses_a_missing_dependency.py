"""A model that needs a library the lock leaves out of the Bento trains, gates and registers in the
full development venv; `make build` then refuses it, naming the library, where it is needed and
the fix, and builds nothing (the Bento would crash-loop with ModuleNotFoundError)."""

from __future__ import annotations

import subprocess

import pytest
from sklearn.datasets import load_wine

from tests.conftest import copy_project, make

pytestmark = pytest.mark.slow

# sortedcontainers is in the venv through the dev group (schemathesis -> hypothesis) and in no
# main dependency's closure: `uv export --no-default-groups` does not list it.
ESTIMATOR = '''"""needy estimator: features clipped to their training range, kept in sorted lists."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.pipeline import Pipeline
from sortedcontainers import SortedList


class ClipToTrainingRange(TransformerMixin, BaseEstimator):
    def fit(self, X, y=None):
        self.sorted_ = [SortedList(column) for column in np.asarray(X, dtype=float).T]
        return self

    def transform(self, X):
        low = [s[0] for s in self.sorted_]
        high = [s[-1] for s in self.sorted_]
        return np.clip(np.asarray(X, dtype=float), low, high)


def build_estimator(params: dict[str, Any], seed: int) -> Pipeline:
    model = HistGradientBoostingClassifier(random_state=seed, **params)
    return Pipeline([("clip", ClipToTrainingRange()), ("model", model)])
'''


TRUSTED = """
persistence:
  trusted:
    - models.needy.estimator.ClipToTrainingRange
    - sortedcontainers.sortedlist.SortedList
"""


@pytest.fixture
def repo(tmp_path):
    dest = copy_project(tmp_path / "repo")
    load_wine(as_frame=True).frame.to_csv(dest / "wine.csv", index=False)
    return dest


def test_build_refuses_a_model_needing_a_library_the_bento_lacks_until_it_is_added(repo, tmp_path):
    env = {"BENTOML_HOME": str(tmp_path / "bentoml")}
    steps = [
        ("new-model", "NAME=needy", "DATA=wine.csv", "TARGET=target", "TASK=classification"),
        ("train", "MODEL=needy"),
        ("promote", "MODEL=needy"),
    ]
    for i, step in enumerate(steps):
        result = make(repo, *step, env=env)
        assert result.returncode == 0, f"make {' '.join(step)}:\n{result.stdout}\n{result.stderr}"
        if i == 0:  # the data scientist's estimator, using a library the venv happens to have
            (repo / "models" / "needy" / "estimator.py").write_text(ESTIMATOR)
            with (repo / "models" / "needy" / "config.yaml").open("a") as config:
                config.write(TRUSTED)  # what `make train` asks for, naming both types
    import_line = ESTIMATOR.splitlines().index("from sortedcontainers import SortedList") + 1
    (repo / "build").mkdir(exist_ok=True)
    (repo / "build" / "bento-tag").write_text("sales_api:previous\n")
    bentos = tmp_path / "bentoml" / "bentos"

    refused = make(repo, "build", "MODEL=needy", env=env)

    assert refused.returncode == 2
    assert (
        f"- sortedcontainers (needed by model.skops, models/needy/estimator.py:{import_line}): "
        "its distribution sortedcontainers is not in build/requirements.txt"
    ) in refused.stderr
    assert "fix: `uv add sortedcontainers`, commit pyproject.toml and uv.lock" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert "sortedcontainers" not in (repo / "build" / "requirements.txt").read_text()
    assert (repo / "build" / "bento-tag").read_text() == "sales_api:previous\n"
    assert not list(bentos.glob("*/*/bento.yaml"))

    # The fix the message gives. Not --offline: re-locking reads every package's index page,
    # which a fresh machine's `uv sync --frozen` never cached (the registry is reachable, as in CI).
    added = subprocess.run(
        [str(repo / ".venv" / "bin" / "uv"), "add", "--no-sync", "sortedcontainers"],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert added.returncode == 0, added.stderr
    # The venv is the test session's own (a link): a new lock must not make `make` re-sync it under
    # the other tests. It already has the library; a stamp newer than the lock says it is synced.
    (repo / ".test-stamp").touch()
    built = make(repo, "build", "MODEL=needy", "STAMP=.test-stamp", env=env)

    assert built.returncode == 0, built.stderr
    tag = (repo / "build" / "bento-tag").read_text().strip()
    assert tag.startswith("needy_api:")
    bento_requirements = bentos / tag.replace(":", "/") / "env" / "python" / "requirements.txt"
    assert "sortedcontainers==" in bento_requirements.read_text()

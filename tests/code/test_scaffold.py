"""models/scaffold.py: the package it writes passes the project's lint for any model name."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from models.scaffold import scaffold
from tests.conftest import copy_project

RUFF = str(Path(sys.executable).with_name("ruff"))


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A copy of the project with a small dataset; the scaffold writes models/<name>/ there."""
    tmp_path = copy_project(tmp_path_factory.mktemp("repo"))
    pd.DataFrame(
        {
            "age": [63, 41, 58, 50],
            "stage": ["I", "II", "I", "III"],
            "smoker": [True, False, False, True],
            "relapsed": ["yes", "no", "no", "yes"],
        }
    ).to_csv(tmp_path / "patients.csv", index=False)
    return tmp_path


def ruff(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([RUFF, *args], cwd=project, capture_output=True, text=True, check=False)


# Names sorting before and after `models.contract`, the package's other first-party import.
@pytest.mark.parametrize("name", ["breast", "churn", "con", "co_x", "a1", "contracts", "zeta"])
def test_scaffolded_package_passes_lint_whatever_its_name(project, name):
    scaffold(name, Path("patients.csv"), "relapsed", "classification", root=project)
    subprocess.run([RUFF, "format", "--quiet", f"models/{name}"], cwd=project, check=True)

    lint = ruff(project, "check", "--no-cache", f"models/{name}")
    formatted = ruff(project, "format", "--check", "--no-cache", f"models/{name}")

    assert lint.returncode == 0, lint.stdout
    assert formatted.returncode == 0, formatted.stdout

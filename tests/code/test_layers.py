"""The layout's dependency rules (pyproject.toml [tool.importlinter]) hold and catch a breach."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

from core.settings import ROOT

LINT_IMPORTS = str(Path(sys.executable).with_name("lint-imports"))
PACKAGES = ("core", "models", "serving", "training", "loadtests", "deploy", "batch", "monitoring")


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [LINT_IMPORTS, "--no-cache"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
    )


def copy_sources(dest: Path) -> Path:
    for name in PACKAGES:
        shutil.copytree(ROOT / name, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(ROOT / "pyproject.toml", dest / "pyproject.toml")
    return dest


def test_the_project_keeps_every_layer_contract():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout
    assert "0 broken" in result.stdout


def test_a_model_package_importing_training_breaks_a_contract(tmp_path):
    root = copy_sources(tmp_path)
    init = root / "models" / "sales" / "__init__.py"
    init.write_text(init.read_text() + "\nfrom training.train import train  # noqa\n")

    result = lint_imports(root)

    assert result.returncode == 1
    assert "model packages use only the core BROKEN" in result.stdout
    assert "models.sales -> training.train" in result.stdout


def test_deploy_importing_training_breaks_a_contract(tmp_path):
    root = copy_sources(tmp_path)
    smoke = root / "deploy" / "smoke.py"
    smoke.write_text(smoke.read_text() + "\nimport training.pipeline  # noqa\n")

    result = lint_imports(root)

    assert result.returncode == 1
    assert "load tests and deploy never import training BROKEN" in result.stdout


def test_monitoring_importing_training_breaks_a_contract(tmp_path):
    root = copy_sources(tmp_path)
    store = root / "monitoring" / "store.py"
    store.write_text(store.read_text() + "\nimport training.evaluate  # noqa\n")

    result = lint_imports(root)

    assert result.returncode == 1
    assert "never imports training BROKEN" in " ".join(result.stdout.split())


def test_live_quality_importing_deploy_breaks_a_contract(tmp_path):
    root = copy_sources(tmp_path)
    quality = root / "monitoring" / "quality.py"
    quality.write_text(quality.read_text() + "\nimport deploy.routing  # noqa\n")

    result = lint_imports(root)

    assert result.returncode == 1
    assert "so it never imports deploy BROKEN" in " ".join(result.stdout.split())


def imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_service_py_imports_only_what_the_bento_ships():
    # import-linter cannot take a top-level module as a root: the serving rule, checked here.
    assert imported_packages(ROOT / "service.py") & {"training", "loadtests", "deploy"} == set()
    assert {"serving", "core"} <= imported_packages(ROOT / "service.py")

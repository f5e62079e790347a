"""The build check finds every module a model's files and the shipped code need, without loading
anything, and reports each one the Bento's requirements do not provide."""

from __future__ import annotations

import argparse
import collections
import copyreg
import datetime
import decimal
import fractions
import functools
import io
import ipaddress
import pickle
import subprocess
import sys
from pathlib import Path

import joblib
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sortedcontainers import SortedList

from core.settings import ROOT
from serving.dependencies import (
    DependencyError,
    check,
    installed_distributions,
    model_needs,
    pickle_modules,
    read_requirements,
    unmet,
)

# What the Bento of these tests installs: a few main dependencies, none of the dev ones.
REQUIREMENTS = "numpy==2.4.6\nscikit-learn==1.9.1 ; python_version >= '3.11'\njoblib==1.6.0\n"

# Every kind of array joblib writes after its NumpyArrayWrapper: raw items (with alignment
# padding), or a nested pickle for arrays holding Python objects.
ARRAYS = {
    "float": np.linspace(0, 1, 7),
    "fortran": np.asfortranarray(np.arange(12.0).reshape(3, 4)),
    "int8_odd_length": np.arange(5, dtype=np.int8),
    "bool": np.array([True, False, True]),
    "complex": np.array([1 + 2j]),
    "unicode": np.array(["a", "bcd"]),
    "datetime": np.array(["2024-01-01"], dtype="datetime64[ns]"),
    "structured": np.zeros(3, dtype=[("a", "i4"), ("b", "f8")]),
    "big_endian": np.arange(3, dtype=">i4"),
    "empty": np.empty((0, 3)),
    "zero_dimensional": np.array(7.0),
    "objects": np.array([fractions.Fraction(1, 2), "x"], dtype=object),
    "object_fields": np.array([(decimal.Decimal(1), 1.0)], dtype=[("a", "O"), ("b", "f8")]),
}


def arrays_then_an_object(path: Path, **dump) -> Path:
    """A joblib file whose last object (an IP address) comes after all of ARRAYS' bytes."""
    joblib.dump(
        [ARRAYS, collections.OrderedDict(last=ipaddress.ip_address("10.0.0.1"))], path, **dump
    )
    return path


def fitted_pipeline() -> Pipeline:
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(40, 3)), np.arange(40) % 2
    return Pipeline([("scale", StandardScaler()), ("model", LogisticRegression())]).fit(X, y)


def test_a_joblib_pipeline_pickle_names_its_sklearn_and_numpy_modules(tmp_path):
    pipe = fitted_pipeline()
    path = tmp_path / "model.pkl"
    joblib.dump(pipe, path)

    modules = pickle_modules(path)

    assert {type(pipe).__module__, *(type(step).__module__ for _, step in pipe.steps)} <= modules
    assert {m.split(".")[0] for m in modules} == {"sklearn", "numpy", "joblib"}


@pytest.mark.parametrize("protocol", [0, 1, 2, 3, 4, 5])
def test_modules_pickled_after_every_kind_of_array_are_found(tmp_path, protocol):
    path = arrays_then_an_object(tmp_path / "model.pkl", protocol=protocol)

    modules = pickle_modules(path)

    assert {"ipaddress", "fractions", "decimal", "collections"} <= modules


@pytest.mark.parametrize("method", ["zlib", "gzip", "bz2", "lzma", "xz"])
def test_compressed_joblib_files_are_scanned_too(tmp_path, method):
    path = arrays_then_an_object(tmp_path / "model.pkl", compress=(method, 3))
    assert {"ipaddress", "fractions", "decimal"} <= pickle_modules(path)


class _Recorder(pickle._Unpickler):
    """The reference: the modules the real unpickler asks for while loading."""

    def __init__(self, data: bytes) -> None:
        super().__init__(io.BytesIO(data))
        self.modules: set[str] = set()

    def find_class(self, module: str, name: str):
        found = super().find_class(module, name)
        if self.proto < 3:  # the unpickler's own fix_imports mapping of Python 2 names
            from _compat_pickle import IMPORT_MAPPING, NAME_MAPPING

            module = NAME_MAPPING.get((module, name), (IMPORT_MAPPING.get(module, module),))[0]
        self.modules.add(module)
        return found


@pytest.fixture
def extension_code():
    """fractions.Fraction pickled as an extension code (EXT1) while the test runs."""
    copyreg.add_extension("fractions", "Fraction", 240)
    yield
    copyreg.remove_extension("fractions", "Fraction", 240)


@pytest.mark.parametrize("protocol", [0, 1, 2, 3, 4, 5])
def test_the_scan_names_exactly_the_modules_the_unpickler_imports(
    tmp_path, protocol, extension_code
):
    shared = decimal.Decimal("1.5")
    loop: list = []
    loop.append(loop)
    loop_in_tuple = ([],)
    loop_in_tuple[0].append(loop_in_tuple)  # POP / POP_MARK
    strings = [f"s{i}" for i in range(300)]  # memo keys past 255: LONG_BINPUT / LONG_BINGET
    objects = [
        collections.OrderedDict(a=1), collections.deque([1, 2]), fractions.Fraction(1, 3),
        shared, shared, datetime.date(2024, 1, 2), {1, 2}, frozenset({3}), bytearray(b"ab"),
        b"bytes", b"x" * 300, 1000, 2**100, 2**3000, -1, 3.5, complex(1, 2),
        functools.partial(max, 1), range(3), slice(1, 2), int, argparse.Namespace(x=1),
        np.arange(6).reshape(2, 3), np.float32(1.5), "text", None, True, loop, loop_in_tuple,
        strings, strings[::-1],
    ]  # fmt: skip
    data = pickle.dumps(objects, protocol=protocol)
    reference = _Recorder(data)
    reference.load()
    (tmp_path / "model.pkl").write_bytes(data)

    assert pickle_modules(tmp_path / "model.pkl") == reference.modules


@pytest.mark.parametrize("keep", [0.05, 0.3, 0.6, 0.95, -1])
def test_a_truncated_model_file_is_an_error_naming_the_file_and_byte(tmp_path, keep):
    data = arrays_then_an_object(tmp_path / "whole.pkl").read_bytes()
    cut = data[:keep] if keep == -1 else data[: int(len(data) * keep)]
    (tmp_path / "model.pkl").write_bytes(cut)

    with pytest.raises(
        DependencyError, match=r"^model\.pkl: byte \d+: not a pickle joblib could load: "
    ):
        pickle_modules(tmp_path / "model.pkl")


def test_bytes_after_the_end_of_the_pickle_are_an_error(tmp_path):
    data = arrays_then_an_object(tmp_path / "whole.pkl").read_bytes()
    (tmp_path / "model.pkl").write_bytes(data + b"\x00")

    with pytest.raises(
        DependencyError, match=r"^model\.pkl: byte \d+: data follows the end of the pickle"
    ):
        pickle_modules(tmp_path / "model.pkl")


def persistent_id_pickle() -> bytes:
    out = io.BytesIO()
    pickler = pickle.Pickler(out, protocol=5)
    pickler.persistent_id = lambda obj: "ref" if obj == "external" else None
    pickler.dump(["external"])
    return out.getvalue()


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (persistent_id_pickle(), "refers to a persistent id"),
        (
            pickle.dumps(pickle.PickleBuffer(b"abc"), protocol=5, buffer_callback=lambda b: False),
            "refers to out-of-band buffers",
        ),
        (b"\x80\x05\x82\xff\x00.", "extension code 255 is not registered"),
    ],
)
def test_a_pickle_joblib_could_not_load_either_is_an_error(tmp_path, data, why):
    (tmp_path / "model.pkl").write_bytes(data)

    with pytest.raises(DependencyError, match=f"not a pickle joblib could load: {why}"):
        pickle_modules(tmp_path / "model.pkl")


def test_a_file_that_is_no_pickle_is_an_error(tmp_path):
    (tmp_path / "model.pkl").write_bytes(b"PK\x03\x04 a zip file, say")

    with pytest.raises(
        DependencyError, match=r"^model\.pkl: byte \d+: not a pickle joblib could load"
    ):
        pickle_modules(tmp_path / "model.pkl")


def test_a_model_file_of_unknown_format_stops_the_check(tmp_path):
    (tmp_path / "model.yaml").write_text("name: m\n")  # BentoML's record: not the model's
    (tmp_path / "model.safetensors").write_bytes(b"PK")

    with pytest.raises(
        DependencyError, match=r"model\.safetensors: no reader for \.safetensors model files"
    ):
        model_needs(tmp_path)


def test_a_skops_file_names_the_modules_of_the_types_it_builds_without_loading(tmp_path):
    import skops.io
    from sklearn.preprocessing import StandardScaler

    (tmp_path / "model.skops").write_bytes(skops.io.dumps(StandardScaler().fit([[0.0], [1.0]])))

    modules = {need.module for need in model_needs(tmp_path)}

    assert {"skops", "sklearn.preprocessing._data", "numpy"} <= modules


def test_a_pickled_library_outside_the_requirements_is_reported_with_the_fix(tmp_path):
    joblib.dump({"pipeline": fitted_pipeline(), "seen": SortedList([3, 1])}, tmp_path / "model.pkl")
    needs = model_needs(tmp_path)

    problems = unmet(needs, read_requirements(REQUIREMENTS), ROOT, set(), installed_distributions())
    with_it = read_requirements(REQUIREMENTS + "sortedcontainers==2.4.0\n")

    assert [(p.module, p.where) for p in problems] == [("sortedcontainers", ("model.pkl",))]
    assert "sortedcontainers is not in build/requirements.txt" in problems[0].reason
    assert problems[0].fix.startswith(
        "`uv add sortedcontainers`, commit pyproject.toml and uv.lock"
    )
    assert unmet(needs, with_it, ROOT, set(), installed_distributions()) == []


def test_a_pickled_module_no_installed_distribution_provides_is_reported(tmp_path):
    # What a model of a library nobody installed pickles, written by hand (lightgbm is installed
    # here now, for the ONNX tests, so a made-up library stands in for it).
    (tmp_path / "model.pkl").write_bytes(b"cunboostedgbm.sklearn\nUBRegressor\n)R.")

    problems = unmet(
        model_needs(tmp_path),
        read_requirements(REQUIREMENTS),
        ROOT,
        set(),
        installed_distributions(),
    )

    assert [(p.module, p.where) for p in problems] == [("unboostedgbm", ("model.pkl",))]
    assert "no installed distribution provides it" in problems[0].reason


def test_a_class_defined_in_the_training_script_is_reported(tmp_path):
    (tmp_path / "model.pkl").write_bytes(b"c__main__\nMyTransformer\n)R.")

    problems = unmet(model_needs(tmp_path), set(), ROOT, set(), installed_distributions())

    assert [p.module for p in problems] == ["__main__"]
    assert "define it in the model package" in problems[0].fix


def write_project(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


BENTOFILE = (
    'include:\n  - "service.py"\n  - "serving/*.py"\n  - "models/*.py"\n  - "models/*/*.py"\n'
)
NEEDY = """\
from __future__ import annotations
from typing import TYPE_CHECKING
from sortedcontainers import SortedList
from .estimator import build
if TYPE_CHECKING:
    import hypothesis
try:
    import msgpack
except ImportError:
    msgpack = None
"""


@pytest.fixture
def project(tmp_path) -> Path:
    return write_project(
        tmp_path / "project",
        {
            "bentofile.yaml": BENTOFILE,
            "service.py": "from serving import helper\n",
            "serving/__init__.py": "",
            "serving/helper.py": "import numpy\nimport sklearn.pipeline\n",
            "models/__init__.py": "import importlib\n",
            "models/needy/__init__.py": NEEDY,
            "models/needy/estimator.py": "from sklearn.pipeline import Pipeline\n",
            "models/other/__init__.py": "import lightgbm\n",  # another model: not in this Bento
            "training/__init__.py": "",
            "training/features.py": "",
            "requirements.txt": REQUIREMENTS,
        },
    )


def test_imports_of_the_served_model_package_are_checked_with_file_and_line(project, tmp_path):
    (tmp_path / "store").mkdir()
    joblib.dump(fitted_pipeline(), tmp_path / "store" / "model.pkl")

    result = check(project, "needy", tmp_path / "store", project / "requirements.txt")

    assert [(p.module, p.where) for p in result.problems] == [
        ("sortedcontainers", ("models/needy/__init__.py:3",))
    ]
    assert (
        "its distribution sortedcontainers is not in requirements.txt" in result.problems[0].reason
    )


def test_project_code_the_bento_does_not_ship_is_reported(project, tmp_path):
    write_project(project, {"service.py": "from training import features\n"})
    (tmp_path / "store").mkdir()
    (tmp_path / "store" / "model.pkl").write_bytes(b"ctraining.features\nadd_lags\n)R.")
    write_project(project, {"models/needy/__init__.py": ""})

    result = check(project, "needy", tmp_path / "store", project / "requirements.txt")

    assert [(p.module, p.where) for p in result.problems] == [
        ("training.features", ("model.pkl", "service.py:1"))
    ]
    assert "the Bento carries no training code" in result.problems[0].reason


def run_check(project: Path, store: Path) -> subprocess.CompletedProcess:
    """`python -m serving.dependencies` on the test project's model `needy`."""
    args = ["--root", str(project), "--model-dir", str(store), "--model", "needy"]
    return subprocess.run(
        [sys.executable, "-m", "serving.dependencies", str(project / "requirements.txt"), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_command_exits_2_without_a_traceback_on_a_truncated_model(tmp_path, project):
    data = arrays_then_an_object(tmp_path / "whole.pkl").read_bytes()
    (tmp_path / "store").mkdir()
    (tmp_path / "store" / "model.pkl").write_bytes(data[: len(data) // 2])

    result = run_check(project, tmp_path / "store")

    assert result.returncode == 2
    assert result.stderr.startswith("error: model.pkl: byte ")
    assert "Traceback" not in result.stderr


def test_the_command_exits_2_naming_module_places_and_fix(tmp_path, project):
    (tmp_path / "store").mkdir()
    joblib.dump(SortedList([1]), tmp_path / "store" / "model.pkl")

    result = run_check(project, tmp_path / "store")

    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "error: the Bento of needy would not carry what it needs; nothing was built:",
        "- sortedcontainers (needed by model.pkl, models/needy/__init__.py:3): its distribution "
        "sortedcontainers is not in requirements.txt (uv.lock's main dependencies: what the "
        "Bento installs)",
        "  fix: `uv add sortedcontainers`, commit pyproject.toml and uv.lock, and build again",
    ]


def test_the_command_passes_when_the_requirements_provide_every_module(tmp_path, project):
    write_project(project, {"models/needy/__init__.py": "import numpy\n"})
    (tmp_path / "store").mkdir()
    joblib.dump(fitted_pipeline(), tmp_path / "store" / "model.pkl")

    result = run_check(project, tmp_path / "store")

    assert result.returncode == 0, result.stderr
    assert result.stdout == (
        "needy: its 7 model and source files need joblib, numpy, sklearn: "
        f"all in {project / 'requirements.txt'}\n"
    )

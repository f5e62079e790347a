"""Model files load without running foreign code, and only when their bytes are the recorded ones
(core/modelfile.py)."""

from __future__ import annotations

import os
import pickle

import pytest
import skops.io
from sklearn.linear_model import LinearRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from core import modelfile
from core.modelfile import UnsafeModelFile
from tests.fixtures.variants import Touch


def fitted() -> LinearRegression:
    return LinearRegression().fit([[0.0], [1.0], [2.0]], [0.0, 1.0, 2.0])


def test_a_scikit_learn_model_round_trips_through_skops(tmp_path):
    path = modelfile.dump_model(
        fitted(), tmp_path, trusted=[], allow_pickle=False, config="config.yaml"
    )
    assert path.name == "model.skops"
    model = modelfile.load_model(tmp_path, trusted=[], allow_pickle=False)
    assert model.predict([[3.0]]) == pytest.approx([3.0])


def test_saving_a_model_holding_an_untrusted_function_names_it_and_the_config_key(tmp_path):
    model = Pipeline([("f", FunctionTransformer(os.getcwd)), ("m", LinearRegression())])
    with pytest.raises(UnsafeModelFile, match=r"posix\.getcwd; .* persistence\.trusted in c\.yaml"):
        modelfile.dump_model(model, tmp_path, trusted=[], allow_pickle=False, config="c.yaml")
    assert list(tmp_path.iterdir()) == []


def test_a_skops_file_that_would_build_an_untrusted_type_is_refused_naming_it(tmp_path):
    (tmp_path / "model.skops").write_bytes(skops.io.dumps({"run": os.system}))
    with pytest.raises(UnsafeModelFile, match=r"types that are not trusted: posix\.system"):
        modelfile.load_model(tmp_path, trusted=[], allow_pickle=False)


def test_a_pickle_in_place_of_the_skops_file_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "ran"
    (tmp_path / "model.skops").write_bytes(pickle.dumps(Touch(marker)))
    with pytest.raises(UnsafeModelFile, match=r"model\.skops: not a skops file"):
        modelfile.load_model(tmp_path, trusted=[], allow_pickle=False)
    assert not marker.exists()


def test_a_pickled_model_loads_only_for_a_package_that_opted_in(tmp_path):
    marker = tmp_path / "ran"
    (tmp_path / "model.pkl").write_bytes(pickle.dumps(Touch(marker)))
    with pytest.raises(UnsafeModelFile, match=r"model\.pkl is a pickle, which runs code"):
        modelfile.load_model(tmp_path, trusted=[], allow_pickle=False)
    assert not marker.exists()
    modelfile.load_model(tmp_path, trusted=[], allow_pickle=True).close()  # the opt-in: its risk
    assert marker.exists()


@pytest.fixture
def recorded(tmp_path):
    (tmp_path / "a.bin").write_bytes(b"a")
    (tmp_path / "model.yaml").write_text("name: x\n")
    return {"a.bin": modelfile.sha256(tmp_path / "a.bin")}


def test_files_matching_their_record_pass(tmp_path, recorded):
    modelfile.verify_files(tmp_path, recorded, what="m:1", own=["model.yaml"])


@pytest.mark.parametrize(
    ("change", "says"),
    [
        (lambda d: (d / "a.bin").write_bytes(b"b"), "m:1: a.bin does not match the sha256"),
        (lambda d: (d / "a.bin").unlink(), "m:1: a.bin is missing"),
        (lambda d: (d / "b.pkl").write_bytes(b""), "m:1: b.pkl is not one of the files recorded"),
    ],
    ids=["changed", "missing", "added"],
)
def test_a_changed_missing_or_added_file_is_refused_naming_it(tmp_path, recorded, change, says):
    change(tmp_path)
    with pytest.raises(UnsafeModelFile, match=says):
        modelfile.verify_files(tmp_path, recorded, what="m:1", own=["model.yaml"])

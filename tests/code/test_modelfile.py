"""Model files load without running foreign code, and only when their bytes are the recorded ones
(core/modelfile.py)."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import skops.io
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import (
    ExtraTreesRegressor,
    GradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
    StackingRegressor,
)
from sklearn.feature_selection import SelectKBest
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.neighbors import KNeighborsRegressor
from sklearn.neural_network import MLPRegressor
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer, SplineTransformer
from sklearn.tree import DecisionTreeRegressor

from core import modelfile
from core.modelfile import UnsafeModelFile
from models.config import load_config
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


# Common scikit-learn estimators, each holding an internal type skops' defaults leave out (a
# forest's Tree, a KD-tree, an optimizer, kernels, calibrators, a Bunch, a score function, BSpline).
SKLEARN_MODELS = {
    "random forest regressor": lambda: RandomForestRegressor(n_estimators=3, random_state=0),
    "random forest classifier": lambda: RandomForestClassifier(n_estimators=3, random_state=0),
    "extra trees": lambda: ExtraTreesRegressor(n_estimators=3, random_state=0),
    "gradient boosting": lambda: GradientBoostingClassifier(n_estimators=3),
    "hist gradient boosting": lambda: HistGradientBoostingRegressor(max_iter=3),
    "k neighbours": lambda: KNeighborsRegressor(n_neighbors=2, algorithm="kd_tree"),
    "MLP": lambda: MLPRegressor(hidden_layer_sizes=(3,), max_iter=3, random_state=0),
    "gaussian process": lambda: GaussianProcessRegressor(),
    "calibrated classifier": lambda: CalibratedClassifierCV(LogisticRegression(), cv=2),
    "stacking": lambda: StackingRegressor(
        [("tree", DecisionTreeRegressor(max_depth=2)), ("linear", LinearRegression())], cv=2
    ),
    "select k best": lambda: make_pipeline(SelectKBest(k=1), LinearRegression()),
    "spline features": lambda: make_pipeline(SplineTransformer(n_knots=3), LinearRegression()),
}


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("make", SKLEARN_MODELS.values(), ids=list(SKLEARN_MODELS))
def test_a_scikit_learn_estimator_saves_and_loads_with_nothing_listed_as_trusted(tmp_path, make):
    X = np.arange(24, dtype=float).reshape(12, 2) % 7
    y = np.arange(12) % 2
    model = make().fit(X, y)
    modelfile.dump_model(model, tmp_path, trusted=[], allow_pickle=False, config="c.yaml")
    loaded = modelfile.load_model(tmp_path, trusted=[], allow_pickle=False)
    assert loaded.predict(X).tolist() == model.predict(X).tolist()


def halve(x):  # a data scientist's own function: trusted only once listed
    return x / 2


def own_function_model():
    return Pipeline([("f", FunctionTransformer(halve)), ("m", LinearRegression())]).fit(
        np.array([[0.0], [1.0], [2.0]]), [0.0, 1.0, 2.0]
    )


def test_saving_a_model_holding_an_untrusted_function_names_it_and_the_config_key(tmp_path):
    model = Pipeline([("f", FunctionTransformer(os.getcwd)), ("m", LinearRegression())])
    with pytest.raises(UnsafeModelFile, match=r"posix\.getcwd\.\n.* c\.yaml"):
        modelfile.dump_model(model, tmp_path, trusted=[], allow_pickle=False, config="c.yaml")
    assert list(tmp_path.iterdir()) == []


OWN = "tests.code.test_modelfile.halve"
CONFIGS = {
    # config.yaml's persistence part: the lines the error gives, and where they go.
    "no persistence key": (
        "seed: 1\n",
        f"add these lines at the end of {{config}}:\npersistence:\n  trusted:\n    - {OWN}",
    ),
    "persistence without trusted": (
        "persistence:\n  allow_pickle: false\nseed: 1\n",
        f"add these lines after line 1 of {{config}} (persistence:):\n  trusted:\n    - {OWN}",
    ),
    "a trusted list": (
        "persistence:\n    trusted:\n    -   os.getcwd\nseed: 1\n",
        f"add these lines after line 3 of {{config}} (persistence.trusted):\n    - {OWN}",
    ),
}


@pytest.mark.parametrize(("config", "says"), CONFIGS.values(), ids=list(CONFIGS))
def test_the_untrusted_type_error_gives_the_exact_lines_that_make_the_model_load(
    tmp_path, config, says
):
    path = tmp_path / "config.yaml"
    path.write_text(config + "gate:\n  thresholds: {r2: '>= 0'}\n")
    with pytest.raises(UnsafeModelFile) as refused:
        modelfile.dump_model(
            own_function_model(), tmp_path, trusted=[], allow_pickle=False, config=str(path)
        )
    message = str(refused.value)
    assert message.startswith(f"the model holds types that loading would refuse: {OWN}.\n")
    assert message.endswith(says.format(config=path))

    # Pasted where it says, the lines are valid config that trusts exactly that type.
    head, lines = says.split(":\n", 1)
    text = path.read_text().splitlines()
    at = int(head.split("after line ")[1].split()[0]) if "after line" in head else len(text)
    path.write_text("\n".join([*text[:at], lines, *text[at:]]) + "\n")
    trusted = load_config(path).persistence.trusted
    assert OWN in trusted
    modelfile.dump_model(
        own_function_model(), tmp_path, trusted=trusted, allow_pickle=False, config=str(path)
    )


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

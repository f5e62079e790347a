"""The runtimes a registered model can be served by, fastest first.

- compiled: the model package's own compiled predictor (`ModelSpec.compile`), numpy only;
- onnx: ONNX Runtime running a skl2onnx conversion of the whole fitted model;
- sklearn: the predict path itself (`models.predict`) on the fitted model. Always available.

Registration admits a runtime only if it reproduced the predict path on the whole validation set
(`training/runtimes.py`) and saves its file beside the model. The service and the parity check
load runtimes through `load` below, so what was checked is exactly what serves.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from core import modelfile
from models.config import ModelConfig, PersistenceConfig, package_config
from models.contract import Outputs, Task

Name = Literal["compiled", "onnx", "sklearn"]
ORDER: tuple[Name, ...] = ("compiled", "onnx", "sklearn")
# None of these runs code when it loads: arrays + JSON, protobuf, skops (core/modelfile.py). The
# sklearn runtime's file is model.pkl instead only for a package that opted in to pickles.
FILES: dict[Name, str] = {
    "compiled": "compiled.npz",
    "onnx": "model.onnx",
    "sklearn": modelfile.SKOPS_FILE,
}

Runtime = Callable[[list[dict[str, Any]]], Outputs]
# Many rows at once (batch scoring): a frame of the feature columns as `models.predict.
# default_prepare` builds it from records (schema order, float64 floats, datetime64 dates).
FrameRuntime = Callable[[Any], Outputs]


class _Compiled:
    """The compiled predictor: records (the service) or a frame (batch scoring)."""

    def __init__(self, compiled: Any) -> None:
        self.compiled = compiled

    def __call__(self, records: list[dict[str, Any]]) -> Outputs:
        import numpy as np

        return Outputs(np.asarray(self.compiled(records), dtype=float))

    def predict_frame(self, frame: Any) -> Outputs:
        return Outputs(self.compiled.predict_frame(frame))


class _Fitted:
    """The predict path on the fitted model: records, or a frame that is exactly what
    `prepare` would have built from them (only where the package keeps the default prepare)."""

    def __init__(self, spec: Any, model: Any) -> None:
        self.spec, self.model = spec, model

    def __call__(self, records: list[dict[str, Any]]) -> Outputs:
        from models import predict as path_

        return path_.predict_records(self.spec, self.model, records)

    def predict_frame(self, frame: Any) -> Outputs:
        from models import predict as path_

        return path_.predict(self.spec, self.model, frame)


def frame_entry(run: Runtime) -> FrameRuntime | None:
    """The runtime's entry point for a whole frame, if it has one (else: feed it records)."""
    entry: FrameRuntime | None = getattr(run, "predict_frame", None)
    return entry


class RuntimeUnavailable(RuntimeError):
    pass


def persistence(model_name: str) -> PersistenceConfig:
    """What the model's package trusts: its reviewed config file (or the one BENTOGATE_CONFIG
    names for this model), never the model's own record, which travels with the files it would
    vouch for."""
    from core.settings import get_settings
    from models.config import load_config

    settings = get_settings()
    if settings.config is not None and settings.model == model_name:
        cfg: ModelConfig | None = load_config(settings.config)
    else:
        cfg = package_config(model_name)
    return cfg.persistence if cfg is not None else PersistenceConfig()


def load_fitted(folder: Path, model_name: str) -> Any:
    """The fitted scikit-learn model in `folder`, building only the types its package trusts."""
    trust = persistence(model_name)
    return modelfile.load_model(folder, trusted=trust.trusted, allow_pickle=trust.allow_pickle)


def load_registered(tag: str) -> Any:
    """The fitted model of a registered `tag`, once its files match their registered hashes."""
    from core import registry

    stored = registry.get(tag)
    registry.verify(stored)
    try:
        return load_fitted(Path(stored.path), stored.tag.name)
    except modelfile.UnsafeModelFile as exc:
        raise registry.RegistryError(f"{stored.tag}: {exc}") from None


def load(
    name: Name,
    folder: Path,
    *,
    model_name: str,
    task: Task,
    classes: list[Any] | None,
    custom_prepare: bool,
) -> Runtime:
    """The runtime `name` of the model whose files are in `folder`."""
    path = modelfile.model_file(folder) if name == "sklearn" else folder / FILES[name]
    if not path.is_file():
        raise RuntimeUnavailable(f"{name} runtime: {path.name} was not saved with the model")
    if name == "compiled":
        from models import forest

        return _Compiled(forest.load(path))
    from models import get_spec
    from models import predict as path_

    if name == "onnx":
        from models.onnx_runtime import OnnxPredictor

        prepare = None
        if custom_prepare:  # the package builds the model input itself: ONNX gets the same
            prepare = functools.partial(path_.prepare, get_spec(model_name))
        onnx = OnnxPredictor(path, task=task, classes=classes, prepare=prepare)
        # Its predict_frame takes the package's prepared frame: with a custom prepare, batch
        # scoring must hand it records, so it is offered only records.
        return functools.partial(onnx.__call__) if custom_prepare else onnx
    spec, model = get_spec(model_name), load_fitted(folder, model_name)
    if spec.prepare is not None:
        return functools.partial(path_.predict_records, spec, model)
    return _Fitted(spec, model)


def agree(
    expected: Outputs,
    got: Outputs,
    *,
    rtol: float,
    atol: float,
    probability_atol: float,
) -> tuple[bool, str, float]:
    """(same outputs?, why not, largest difference): classifiers need identical labels and
    probabilities within probability_atol; regressors values within rtol/atol."""
    import numpy as np

    want, have = np.asarray(expected.predictions), np.asarray(got.predictions)
    if want.shape != have.shape:
        return False, f"{have.shape[0]} outputs for {want.shape[0]} records", float("inf")
    if expected.probabilities is not None:
        wrong = int(np.sum([a != b for a, b in zip(want.tolist(), have.tolist(), strict=True)]))
        if got.probabilities is None:
            return False, "no class probabilities", float("inf")
        pw, ph = np.asarray(expected.probabilities), np.asarray(got.probabilities)
        if pw.shape != ph.shape:
            return False, f"probabilities of shape {ph.shape}, expected {pw.shape}", float("inf")
        diff = float(np.max(np.abs(pw - ph), initial=0.0))
        if wrong:
            return False, f"{wrong} of {len(want)} labels differ", diff
        if not diff <= probability_atol:
            return False, f"probabilities differ by up to {diff:.3g}", diff
        return True, "", diff
    want, have = want.astype(float), have.astype(float)
    diff = float(np.max(np.abs(want - have), initial=0.0))
    if not np.allclose(have, want, rtol=rtol, atol=atol):
        return False, f"predictions differ by up to {diff:.3g}", diff
    return True, "", diff

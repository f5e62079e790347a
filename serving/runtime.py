"""Which model the service serves, and what it needs to know about it.

Everything comes from the model's own record in the store (its fitted feature schema, task,
classes, serving limits and golden prediction), so the API always matches the model that answers.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bentoml
import yaml

from core import registry
from core.settings import ROOT, Settings
from models import actuals, runtimes
from models.actuals import ActualRule
from models.config import ModelConfig
from models.contract import FeatureSchema, Outputs, Task
from models.runtimes import ORDER, Name

LOG = logging.getLogger("bentogate")
LAST_BUILD = ROOT / "build" / "bento-tag"  # written by `make build` and `make import`


class NoModelError(RuntimeError):
    pass


@dataclass(frozen=True)
class ServedModel:
    tag: str
    name: str
    task: Task
    schema: FeatureSchema
    max_records: int
    max_concurrency: int  # requests in flight beyond which the server answers 429
    timeout_s: float
    classes: list[Any] | None
    golden: dict[str, Any] | None
    runtime: Name  # the runtime to serve: the fastest admitted, or the one a setting forces
    forced: bool  # a setting chose the runtime: no fallback to another one
    runtimes: dict[str, Any]  # verdict per runtime, from registration
    custom_prepare: bool
    parity: dict[str, float]  # tolerances of the golden check
    files: dict[str, str] | None  # sha256 of each file, from registration: checked before loading
    actual: ActualRule  # what POST /feedback accepts as an actual of this model


def bundled_tag(source_dir: Path) -> str | None:
    """Inside a built Bento (`<bento>/src/service.py`), the model it was built with."""
    bento_yaml = source_dir.parent / "bento.yaml"
    if not bento_yaml.is_file():
        return None
    info: dict[str, Any] = yaml.safe_load(bento_yaml.read_text())
    tag: str | None = info.get("labels", {}).get("model_tag")
    return tag


def last_build() -> str | None:
    """The Bento tag of the last `make build`, if any."""
    if not LAST_BUILD.is_file():
        return None
    return LAST_BUILD.read_text().strip() or None


def bento_model_tag(bento: str) -> str | None:
    """The model a Bento serves (its `model_tag` label). Raises NotFound for an unknown Bento."""
    return bentoml.bentos.get(bento).info.labels.get("model_tag")


def resolve_tag(settings: Settings, source_dir: Path | None = None) -> str:
    """In a Bento, its bundled model; else BENTOGATE_MODEL_TAG; else the production model."""
    if source_dir is not None and (tag := bundled_tag(source_dir)):
        return tag
    if settings.model_tag:
        return settings.model_tag
    prod = registry.production(settings.model)
    if prod is not None:
        return str(prod.tag)
    raise NoModelError(
        f"no production model of {settings.model!r} in the store {store_location()}: run "
        "`make train` and `make promote`, or set BENTOGATE_MODEL_TAG"
    )


def store_location() -> str:
    """The model store BentoML searched, and the BENTOML_HOME it came from: a raw `bentoml serve`
    outside make (which sets .bentogate/bentoml) searches BentoML's default, ~/bentoml."""
    from bentoml._internal.configuration.containers import BentoMLContainer

    models = Path(BentoMLContainer.bentoml_home.get()).resolve() / "models"  # BentoML's own answer
    home = os.environ.get("BENTOML_HOME")
    if home:
        return f"{models} (BENTOML_HOME={home})"
    return f"{models} (BENTOML_HOME is not set; make sets .bentogate/bentoml)"


def load_served_model(settings: Settings, source_dir: Path) -> ServedModel:
    tag = resolve_tag(settings, source_dir)
    try:
        stored = bentoml.models.get(tag)
    except bentoml.exceptions.NotFound:
        raise NoModelError(f"model {tag!r} is not in the store {store_location()}") from None
    info, meta = stored.info, registry.metadata(stored)
    config = ModelConfig.model_validate(meta.get("config", {"seed": 0, "gate": {"thresholds": {}}}))
    verdicts = meta.get("runtimes") or {"sklearn": {"admitted": True}}
    wanted = settings.runtime or config.serving.runtime
    schema = FeatureSchema.model_validate(meta["feature_schema"])
    runtime: Name
    if wanted == "auto":
        runtime = next((n for n in ORDER if verdicts.get(n, {}).get("admitted")), "sklearn")
    else:
        runtime = wanted
    return ServedModel(
        tag=str(info.tag),
        name=info.tag.name,
        task=meta["task"],
        schema=schema,
        max_records=config.serving.max_records,
        max_concurrency=config.serving.max_concurrency,
        timeout_s=config.serving.timeout_s,
        classes=meta.get("classes"),
        golden=_golden(meta.get("golden"), schema),
        runtime=runtime,
        forced=wanted != "auto",
        runtimes=verdicts,
        custom_prepare=verdicts.get(runtime, {}).get("feeds") == "prepare",
        parity=config.serving.parity.model_dump(),
        files=meta.get("files"),
        actual=actuals.of_record(meta),
    )


@dataclass(frozen=True)
class LoadedRuntime:
    """A runtime ready to serve, answering per record in the shape the API returns."""

    name: str
    run: runtimes.Runtime
    classes: list[str] | None  # class names as the API shows them, classifiers only

    def predict(self, records: list[dict[str, Any]]) -> list[Any]:
        """One output per record: a float, or (label, {class: probability}) for a classifier."""
        out = self.run(records)
        if self.classes is None:
            values: list[float] = out.predictions.astype(float).tolist()
            return values
        labels = out.predictions.tolist()
        if out.probabilities is None:
            return [(label, {}) for label in labels]
        return [
            (label, dict(zip(self.classes, p, strict=True)))
            for label, p in zip(labels, out.probabilities.tolist(), strict=True)
        ]

    def predict_frame(self, frame: Any) -> Outputs:
        """Outputs for many validated rows at once (batch scoring): a frame of the feature
        columns as `models.predict.default_prepare` builds it from the same records. One call
        of the runtime; a runtime without a frame entry gets the records the API would give it."""
        entry = runtimes.frame_entry(self.run)
        if entry is not None:
            return entry(frame)
        return self.run(frame_records(frame))


def frame_records(frame: Any) -> list[dict[str, Any]]:
    """A typed frame's rows as the validated records the API hands its runtime (model_dump():
    Python ints, floats, bools, strings, and dates as datetime.date)."""
    import pandas as pd

    columns: dict[str, list[Any]] = {}
    for name in frame.columns:
        s = frame[name]
        if pd.api.types.is_datetime64_any_dtype(s):
            columns[name] = [t.date() for t in s.dt.to_pydatetime()]
        else:
            columns[name] = s.tolist()
    names = list(columns)
    return [dict(zip(names, row, strict=True)) for row in zip(*columns.values(), strict=True)]


def _golden(golden: dict[str, Any] | None, schema: FeatureSchema) -> dict[str, Any] | None:
    """The golden prediction as registered. Model metadata holds no None (BentoML refuses it, so
    core/registry.py leaves it out): a record's null field comes back absent, and the predict
    path reads an absent text as NaN where registration had None (a category to scikit-learn's
    encoders), so the sklearn runtime never matched. Each field is put back, null where absent,
    as the API sends it."""
    if not golden:
        return golden
    records = [{f: r.get(f) for f in schema.features} for r in golden["records"]]
    return {**golden, "records": records}


def golden_matches(model: ServedModel, run: runtimes.Runtime) -> tuple[bool, str]:
    """Does the runtime reproduce the predictions recorded at registration (within the model's
    parity tolerances)? Catches a broken artifact or a library drift before any traffic."""
    import numpy as np

    golden = model.golden
    if not golden:
        return False, "the model has no golden prediction"
    probabilities = golden.get("probabilities")
    expected = Outputs(
        np.asarray(golden["predictions"]),
        None if probabilities is None else np.asarray(probabilities, dtype=float),
    )
    ok, why, _ = runtimes.agree(expected, run(golden["records"]), **model.parity)
    return ok, why


def serve_runtime(model: ServedModel, folder: Path) -> tuple[LoadedRuntime, bool]:
    """(the runtime to serve, ready?). The chosen runtime if it loads and reproduces the golden
    prediction; else, unless a setting forced it, the scikit-learn model."""
    names = [model.runtime] if model.forced else list(dict.fromkeys([model.runtime, "sklearn"]))
    classes = None if model.classes is None else [str(c) for c in model.classes]
    try:  # before anything of the model is read: the files must be the registered ones
        registry.verify_record(model.tag, model.files, folder)
    except registry.RegistryError as exc:
        LOG.error("%s is not served: %s", model.tag, exc)
        return LoadedRuntime(names[0], _unavailable, classes), False
    loaded: LoadedRuntime | None = None
    for name in names:
        try:
            run = runtimes.load(
                name,
                folder,
                model_name=model.name,
                task=model.task,
                classes=model.classes,
                custom_prepare=model.custom_prepare,
            )
            loaded = LoadedRuntime(name, run, classes)
            ok, why = golden_matches(model, run)
        except Exception as exc:  # e.g. a file saved by an older format: try the next runtime
            LOG.exception("%s runtime of %s cannot be used", name, model.tag)
            ok, why = False, f"{type(exc).__name__}: {exc}"
        if ok and loaded is not None:
            return loaded, True
        LOG.error("%s runtime of %s is not ready: %s", name, model.tag, why)
    if loaded is None:  # nothing loaded at all: a runtime that answers nothing, never ready
        loaded = LoadedRuntime(names[-1], _unavailable, classes)
    return loaded, False


def _unavailable(records: list[dict[str, Any]]) -> Outputs:
    raise RuntimeError("no runtime of this model could be loaded")

"""Register stage and the model registry on top of the BentoML model store.

A model's labels carry its stage (candidate, production, archived) and git commit; its metadata
carries the provenance needed to rebuild it: metrics, parameters, data hash, fitted feature schema,
library versions and seed, and the sha256 of each of its files (`files`), checked by `verify`
before anything of it is loaded. BentoML has no API to change a stored model's labels, so
promotion rewrites the stage in the model's model.yaml atomically and reads it back.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bentoml
import yaml

from core import modelfile
from core.settings import TAG_PATTERN

MODEL_FILES = (modelfile.SKOPS_FILE, modelfile.PICKLE_FILE)  # the fitted model: one, always saved
STORE_FILES = ("model.yaml",)  # BentoML's own record, which holds the hashes
REFERENCE_FILE = "reference.parquet"  # validation rows with predictions: load-test traffic, drift
STAGES = ("candidate", "production", "archived")


class RegistryError(RuntimeError):
    pass


@dataclass(frozen=True)
class Entry:
    tag: str
    stage: str
    created: str
    git_commit: str
    metrics: dict[str, float]
    runtime: str  # the runtime it serves with unless a setting forces another
    runtimes: dict[str, dict[str, Any]]  # each runtime's verdict at registration, with its reason
    files: dict[str, str]  # sha256 per file; empty for a model registered before hashes


def _jsonable(value: Any) -> Any:
    """Plain JSON types without None: what BentoML accepts as metadata in model.yaml."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value if v is not None]
    return json.loads(json.dumps(value, default=str))


def _sklearn_version() -> str:
    import sklearn

    return str(sklearn.__version__)


def register(
    name: str,
    *,
    metadata: dict[str, Any],
    git_commit: str,
    files: list[Path],
) -> str:
    """Save a candidate into the store with `files` (the fitted model and each admitted runtime's
    file, by their final names); return its tag. The files are copied before the store entry is
    committed, so a failure leaves no entry behind."""
    if not set(MODEL_FILES) & {f.name for f in files}:
        raise RegistryError(f"a model is registered with its {' or '.join(MODEL_FILES)}")
    labels = {"stage": "candidate", "git_commit": git_commit}
    meta = _jsonable(
        {
            **metadata,
            "sklearn_version": _sklearn_version(),
            "python_version": platform.python_version(),
            "bentoml_version": bentoml.__version__,
            # what the files are, checked before any of them loads (here: the copies' bytes)
            "files": {f.name: modelfile.sha256(f) for f in files},
        }
    )
    with bentoml.models.create(name, labels=labels, metadata=meta) as ref:
        for f in files:
            shutil.copyfile(f, ref.path_of(f.name))
    return str(ref.tag)


def metadata(model: bentoml.Model) -> dict[str, Any]:
    """A stored model's metadata: the JSON object `register` wrote. BentoML types each value as
    any metadata type; ours are plain JSON, read as such."""
    return model.info.metadata


def get(tag: str) -> bentoml.Model:
    try:
        return bentoml.models.get(tag)
    except (bentoml.exceptions.NotFound, ValueError):
        raise RegistryError(f"no model {tag!r} in the store") from None


def verify(model: bentoml.Model, folder: Path | None = None) -> None:
    """The model's files (in `folder`, default its store folder) are exactly the ones registered,
    byte for byte; else RegistryError naming the file."""
    verify_record(str(model.tag), metadata(model).get("files"), Path(folder or model.path))


def verify_record(tag: str, files: Any, folder: Path) -> None:
    """`folder` holds exactly `files` (name -> sha256, as registered). A model registered before
    hashes were recorded is refused, not migrated: its pickles are exactly what must not load."""
    if not isinstance(files, dict) or not files:
        raise RegistryError(
            f"{tag} was registered without file hashes (before bentogate checked them) and "
            "will not be loaded: register it again with `make train`"
        )
    try:
        modelfile.verify_files(folder, files, what=tag, own=STORE_FILES)
    except modelfile.UnsafeModelFile as exc:
        raise RegistryError(str(exc)) from None


def _entries(name: str | None = None) -> list[bentoml.Model]:
    try:
        models = bentoml.models.list(name) if name else bentoml.models.list()
    except bentoml.exceptions.NotFound:
        return []
    return sorted(models, key=lambda m: m.info.creation_time)


def production(name: str) -> bentoml.Model | None:
    """The model of `name` at stage production, or None."""
    prod = [m for m in _entries(name) if m.info.labels.get("stage") == "production"]
    if len(prod) > 1:
        raise RegistryError(
            f"{len(prod)} models of {name!r} are at stage production: {[str(m.tag) for m in prod]}"
        )
    return prod[0] if prod else None


def _set_stage(model: bentoml.Model, stage: str) -> None:
    path = Path(model.path_of("model.yaml"))
    info = yaml.safe_load(path.read_text())
    info.setdefault("labels", {})["stage"] = stage
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(yaml.safe_dump(info, sort_keys=False))
    os.replace(tmp, path)
    if bentoml.models.get(model.tag).info.labels.get("stage") != stage:
        raise RegistryError(f"could not set stage of {model.tag} to {stage}")


def promote(tag: str) -> tuple[str, str | None]:
    """Make `tag` the production model of its name; the previous one becomes archived.
    Returns (promoted tag, previous production tag or None)."""
    if not re.match(TAG_PATTERN, tag):
        raise RegistryError(f"expected a model tag (name:version), got {tag!r}")
    try:
        model = bentoml.models.get(tag)
    except bentoml.exceptions.NotFound:
        raise RegistryError(f"no model {tag!r} in the store") from None
    stage = model.info.labels.get("stage")
    if stage == "production":
        return str(model.tag), None
    if metadata(model).get("gate", {}).get("accepted") is not True:
        raise RegistryError(f"{model.tag} did not pass its quality gate; it cannot be promoted")
    previous = production(model.tag.name)
    _set_stage(model, "production")
    if previous is not None:
        _set_stage(previous, "archived")
    return str(model.tag), str(previous.tag) if previous is not None else None


def entries(name: str | None = None) -> list[Entry]:
    return [
        Entry(
            tag=str(m.tag),
            stage=m.info.labels.get("stage", "?"),
            created=m.info.creation_time.strftime("%Y-%m-%d %H:%M:%S"),
            git_commit=m.info.labels.get("git_commit", "?"),
            metrics=metadata(m).get("metrics", {}).get("overall", {}),
            runtime=metadata(m).get("runtime", "sklearn"),
            runtimes=metadata(m).get("runtimes", {}),
            files=metadata(m).get("files") or {},
        )
        for m in _entries(name)
    ]

"""Which model the service serves, and what it needs to know about it.

Everything comes from the model's own record in the store (its fitted feature schema, task,
classes, serving limits and golden prediction), so the API always matches the model that answers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bentoml
import yaml

from core import registry
from core.settings import ROOT, Settings
from models.contract import FeatureSchema

LAST_BUILD = ROOT / "build" / "bento-tag"  # written by `make build` and `make import`


class NoModelError(RuntimeError):
    pass


@dataclass(frozen=True)
class ServedModel:
    tag: str
    name: str
    task: str
    schema: FeatureSchema
    max_records: int
    classes: list[Any] | None
    golden: dict[str, Any] | None
    compiled: bool  # the package's compiled predictor matched the model at registration


def bundled_tag(source_dir: Path) -> str | None:
    """Inside a built Bento (`<bento>/src/service.py`), the model it was built with."""
    bento_yaml = source_dir.parent / "bento.yaml"
    if not bento_yaml.is_file():
        return None
    return yaml.safe_load(bento_yaml.read_text()).get("labels", {}).get("model_tag")


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
        f"no production model of {settings.model!r} in the store: run `make train` and "
        "`make promote`, or set BENTOGATE_MODEL_TAG"
    )


def load_served_model(settings: Settings, source_dir: Path) -> ServedModel:
    tag = resolve_tag(settings, source_dir)
    try:
        info = bentoml.models.get(tag).info
    except bentoml.exceptions.NotFound:
        raise NoModelError(f"model {tag!r} is not in the store") from None
    meta = info.metadata
    return ServedModel(
        tag=str(info.tag),
        name=info.tag.name,
        task=meta["task"],
        schema=FeatureSchema.model_validate(meta["feature_schema"]),
        max_records=int(meta.get("config", {}).get("serving", {}).get("max_records", 1000)),
        classes=meta.get("classes"),
        golden=meta.get("golden"),
        compiled=(meta.get("compiled") or {}).get("admitted") is True and settings.compiled,
    )

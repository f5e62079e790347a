"""Request bodies for load tests, built from the model's held-out data.

Registration saves a bounded sample of the validation rows with the model (its reference file),
so any registered model, or one imported from another run, can be load-tested without the
training run's work files or the training code.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import bentoml
import pandas as pd

from core import registry
from core.registry import REFERENCE_FILE
from models.contract import FeatureSchema


class NoReferenceError(LookupError):
    pass


def held_out(model_tag: str) -> tuple[FeatureSchema, pd.DataFrame]:
    model = bentoml.models.get(model_tag)
    registry.verify(model)  # the load test reads the model's files: only the registered ones
    path = Path(model.path_of(REFERENCE_FILE))
    if not path.is_file():
        raise NoReferenceError(
            f"{model.tag} has no {REFERENCE_FILE} (registered by an older version): "
            "train and register it again"
        )
    schema = FeatureSchema.model_validate(model.info.metadata["feature_schema"])
    return schema, pd.read_parquet(path)


def records(schema: FeatureSchema, valid: pd.DataFrame) -> list[dict[str, Any]]:
    """Validation rows as request records (ISO dates, JSON types, null where nullable); unknown
    categories dropped."""
    feats = valid[list(schema.features)]
    for col in schema.feature_columns:
        if col.kind == "category" and col.categories:
            known = feats[col.name].isin(col.categories)
            feats = feats[known | feats[col.name].isna()] if col.nullable else feats[known]
    return schema.records(feats)


def bodies(
    rows: list[dict[str, Any]], count: int, multi_share: float, multi_size: int, seed: int = 0
) -> list[str]:
    """`count` JSON bodies: a share with `multi_size` records each, the rest with one record."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        size = multi_size if rng.random() < multi_share else 1
        out.append(json.dumps({"records": rng.sample(rows, min(size, len(rows)))}))
    return out


def write_bodies(path: Path, items: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(items) + "\n")
    return path

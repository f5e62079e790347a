"""Request bodies for load tests, built from the model's held-out data.

The held-out data is rebuilt from the model's own provenance (data source, seed, split config),
so any registered model can be load-tested without the training run's work files.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import bentoml
import pandas as pd

from models import get_spec
from models.config import ModelConfig
from models.contract import FeatureSchema
from training.load import load
from training.split import split
from training.validate import validate


def held_out(model_tag: str) -> tuple[FeatureSchema, pd.DataFrame]:
    info = bentoml.models.get(model_tag).info
    spec = get_spec(info.tag.name)
    cfg = ModelConfig.model_validate(info.metadata["config"])
    df = spec.clean(validate(load(spec, cfg.data.source, cfg.seed), spec.schema)).reset_index(
        drop=True
    )
    _, valid = split(df, spec, cfg.split, cfg.seed)
    schema = FeatureSchema.model_validate(info.metadata["feature_schema"])
    return schema, valid


def records(schema: FeatureSchema, valid: pd.DataFrame) -> list[dict[str, Any]]:
    """Validation rows as request records (ISO dates, JSON types); unknown categories dropped."""
    feats = valid[list(schema.features)]
    for col in schema.feature_columns:
        if col.kind == "category" and col.categories:
            feats = feats[feats[col.name].isin(col.categories)]
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

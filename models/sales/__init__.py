"""Default model: daily unit sales of one store (Favorita-like), scored by NWRMSLE."""

from pathlib import Path

import numpy as np
import pandas as pd

from models.contract import ModelSpec
from models.sales import compiled
from models.sales.data import generate
from models.sales.estimator import build_estimator
from models.sales.metrics import nwrmsle
from models.sales.schema import SCHEMA


def drop_returns(df: pd.DataFrame) -> pd.DataFrame:
    # Returns are not demand; CD4ML's EDA dropped them too.
    return df[df["unit_sales"] >= 0]


def perishable_weight(df: pd.DataFrame) -> np.ndarray:
    return np.where(df["perishable"].to_numpy(dtype=bool), 1.25, 1.0)


SPEC = ModelSpec(
    name="sales",
    task="regression",
    schema=SCHEMA,
    build_estimator=build_estimator,
    default_data=generate,
    config_path=Path(__file__).with_name("config.yaml"),
    clean=drop_returns,
    sample_weight=perishable_weight,
    group_by=("family",),
    extra_metrics={"nwrmsle": nwrmsle},
    compile=compiled.build_predictor,
)

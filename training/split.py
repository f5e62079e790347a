"""Split stage: by time for time series (the last weeks validate), else a seeded random split."""

from __future__ import annotations

import pandas as pd
from sklearn.model_selection import train_test_split

from models.config import SplitConfig
from models.contract import ModelSpec


class SplitError(ValueError):
    pass


def time_split(
    df: pd.DataFrame, time_column: str, validation_weeks: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Everything before the last `validation_weeks` weeks trains; those weeks validate."""
    cutoff = df[time_column].max() - pd.Timedelta(weeks=validation_weeks)
    train, valid = df[df[time_column] <= cutoff], df[df[time_column] > cutoff]
    if train.empty or valid.empty:
        span = f"{df[time_column].min():%Y-%m-%d}..{df[time_column].max():%Y-%m-%d}"
        raise SplitError(
            f"split.validation_weeks={validation_weeks} leaves an empty side of {span}"
        )
    return train.reset_index(drop=True), valid.reset_index(drop=True)


def random_split(
    df: pd.DataFrame, fraction: float, seed: int, stratify: pd.Series | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    train, valid = train_test_split(df, test_size=fraction, random_state=seed, stratify=stratify)
    return train.reset_index(drop=True), valid.reset_index(drop=True)


def split(
    df: pd.DataFrame, spec: ModelSpec, cfg: SplitConfig, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    schema = spec.schema
    if schema.time_column is not None:
        if cfg.validation_fraction is not None:
            raise SplitError(
                f"{spec.name} is a time series: use split.validation_weeks, never a random split"
            )
        return time_split(df, schema.time_column, cfg.validation_weeks or 8)
    stratify = df[schema.target] if spec.task == "classification" else None
    return random_split(df, cfg.validation_fraction or 0.2, seed, stratify)

"""The sales estimator: a scikit-learn Pipeline from raw feature columns to unit sales.

The Pipeline holds every fitted transform, so the service feeds it the request records as they
are and training/serving skew cannot creep in.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer, TransformedTargetRegressor
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OrdinalEncoder

CATEGORICAL = ["item_nbr", "family"]
FLAGS = ["perishable", "onpromotion", "holiday", "payday", "class"]


def date_features(dates: pd.DataFrame) -> np.ndarray:
    """Calendar features the seasonality lives in: weekday, day of month, day of year (cyclic)."""
    d = pd.to_datetime(dates.iloc[:, 0])
    doy = d.dt.day_of_year.to_numpy()
    return np.column_stack(
        [
            d.dt.day_of_week.to_numpy(),
            d.dt.day.to_numpy(),
            d.dt.month.to_numpy(),
            np.sin(2 * np.pi * doy / 365.25),
            np.cos(2 * np.pi * doy / 365.25),
        ]
    ).astype(float)


def log1p_units(y: np.ndarray) -> np.ndarray:
    return np.log1p(np.clip(y, 0, None))


def expm1_units(z: np.ndarray) -> np.ndarray:
    # Sales cannot be negative; the model learns log1p(units), so invert and floor at zero.
    return np.clip(np.expm1(z), 0, None)


def build_estimator(params: dict[str, Any], seed: int) -> TransformedTargetRegressor:
    features = ColumnTransformer(
        [
            (
                "categories",
                OrdinalEncoder(
                    handle_unknown="use_encoded_value", unknown_value=-1, encoded_missing_value=-1
                ),
                CATEGORICAL,
            ),
            ("calendar", FunctionTransformer(date_features), ["date"]),
            ("flags", "passthrough", FLAGS),
        ],
        verbose_feature_names_out=False,
    )
    regressor = HistGradientBoostingRegressor(
        categorical_features=[0, 1],
        random_state=seed,
        early_stopping=False,
        **params,
    )
    # Squared error on log1p(units) is what NWRMSLE measures.
    return TransformedTargetRegressor(
        regressor=Pipeline([("features", features), ("regressor", regressor)]),
        func=log1p_units,
        inverse_func=expm1_units,
        check_inverse=False,
    )

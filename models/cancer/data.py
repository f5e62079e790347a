"""The embedded default data: scikit-learn's breast cancer set (569 rows, shipped with the
library, no download), with snake_case column names and the diagnosis as words."""

from __future__ import annotations

import pandas as pd


def load(seed: int) -> pd.DataFrame:
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer(as_frame=True)
    frame = data.frame.rename(columns=lambda c: c.replace(" ", "_"))
    frame["diagnosis"] = [str(data.target_names[t]) for t in frame.pop("target")]
    return frame


MEASURES = (
    "radius",
    "texture",
    "perimeter",
    "area",
    "smoothness",
    "compactness",
    "concavity",
    "concave_points",
    "symmetry",
    "fractal_dimension",
)
# Each cell nucleus measure as its mean, its standard error and its worst (largest) value.
FEATURES = (
    *(f"mean_{m}" for m in MEASURES),
    *(f"{m}_error" for m in MEASURES),
    *(f"worst_{m}" for m in MEASURES),
)

"""Load stage: the embedded default data, or a user's CSV or Parquet file."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd

from core.settings import ROOT
from models.contract import ModelSpec


class DataLoadError(ValueError):
    pass


def load(spec: ModelSpec, source: str, seed: int) -> pd.DataFrame:
    if source == "default":
        return spec.default_data(seed)
    path = Path(source)
    if not path.is_absolute():
        path = ROOT / path  # config paths are relative to the project root
    if not path.is_file():
        raise DataLoadError(f"data source {source!r} is not a file (and not 'default')")
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            # Dates stay strings here: validate parses them and names the rows that fail.
            return pd.read_csv(path, low_memory=False)
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(path)
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        raise DataLoadError(f"{path}: cannot read: {exc}") from None
    raise DataLoadError(f"{path}: unsupported file type {suffix!r}; use .csv or .parquet")


def content_sha256(df: pd.DataFrame) -> str:
    """Hash of the frame's columns, dtypes and values: the same data gives the same hash."""
    h = hashlib.sha256()
    h.update(repr([(c, str(t)) for c, t in df.dtypes.items()]).encode())
    h.update(pd.util.hash_pandas_object(df, index=False).to_numpy().tobytes())
    return h.hexdigest()


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()

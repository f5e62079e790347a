import pandas as pd
import pytest

from training.load import DataLoadError, content_sha256, load
from training.validate import validate


def test_user_csv_and_parquet_with_the_same_schema_load_alike(sales_spec, sales_raw, tmp_path):
    rows = sales_raw.head(200)
    rows.to_csv(tmp_path / "s.csv", index=False)
    rows.to_parquet(tmp_path / "s.parquet", index=False)
    from_csv = validate(load(sales_spec, str(tmp_path / "s.csv"), 0), sales_spec.schema)
    from_parquet = validate(load(sales_spec, str(tmp_path / "s.parquet"), 0), sales_spec.schema)
    pd.testing.assert_frame_equal(from_csv, from_parquet, check_dtype=False)


def test_unsupported_file_type_is_refused(sales_spec, tmp_path):
    path = tmp_path / "sales.xlsx"
    path.write_bytes(b"x")
    with pytest.raises(DataLoadError, match=r"unsupported file type '\.xlsx'"):
        load(sales_spec, str(path), 0)


def test_missing_file_is_refused(sales_spec, tmp_path):
    with pytest.raises(DataLoadError, match="is not a file"):
        load(sales_spec, str(tmp_path / "nope.csv"), 0)


def test_content_hash_changes_with_one_value(sales_raw):
    changed = sales_raw.copy()
    changed.loc[0, "unit_sales"] += 1
    assert content_sha256(sales_raw) == content_sha256(sales_raw.copy())
    assert content_sha256(sales_raw) != content_sha256(changed)

import numpy as np
import pandas as pd
import pytest

from training.validate import DataValidationError, validate


@pytest.fixture
def rows(sales_raw):
    return sales_raw.head(50).copy()


def problems(df, schema) -> str:
    with pytest.raises(DataValidationError) as exc:
        validate(df, schema)
    return str(exc.value)


def test_default_data_meets_the_contract_and_comes_back_typed(sales_spec, sales_raw):
    typed = validate(sales_raw, sales_spec.schema)
    assert len(typed) == len(sales_raw)
    assert typed["date"].dtype.kind == "M"
    assert typed["onpromotion"].dtype == bool


def test_missing_column_is_named(sales_spec, rows):
    assert "missing column: family" in problems(rows.drop(columns=["family"]), sales_spec.schema)


def test_nulls_are_reported_with_their_rows(sales_spec, rows):
    rows.loc[[3, 9], "transactions"] = np.nan
    assert "column 'transactions': missing value in 2 rows (4, 10)" in problems(
        rows, sales_spec.schema
    )


def test_values_out_of_range_are_reported_with_their_rows(sales_spec, rows):
    rows.loc[0, "class"] = -1
    assert "column 'class': below minimum 0 in 1 row (1)" in problems(rows, sales_spec.schema)


def test_unknown_category_is_reported_with_the_value(sales_spec, rows):
    rows.loc[5, "family"] = "TOYS"
    assert "column 'family': unknown category ('TOYS') in 1 row (6)" in problems(
        rows, sales_spec.schema
    )


def test_non_numbers_and_bad_dates_are_reported(sales_spec, rows):
    rows["transactions"] = rows["transactions"].astype(object)
    rows.loc[2, "transactions"] = "many"
    rows["date"] = rows["date"].astype(str)
    rows.loc[7, "date"] = "31/12/2016"
    text = problems(rows, sales_spec.schema)
    assert "column 'transactions': not a number in 1 row (3)" in text
    assert "column 'date': not an ISO date in 1 row (8)" in text


def test_flags_that_are_not_booleans_are_reported(sales_spec, rows):
    rows["onpromotion"] = rows["onpromotion"].astype(object)
    rows.loc[1, "onpromotion"] = "maybe"
    assert "column 'onpromotion': not true/false in 1 row (2)" in problems(rows, sales_spec.schema)


def test_empty_dataset_is_rejected(sales_spec, rows):
    assert "no rows" in problems(rows.iloc[0:0], sales_spec.schema)


def test_long_row_lists_are_shortened(sales_spec, rows):
    rows["class"] = -1
    assert "50 rows (1, 2, 3, 4, 5 and 45 more)" in problems(rows, sales_spec.schema)


def test_csv_strings_for_flags_and_dates_are_accepted(sales_spec, rows, tmp_path):
    path = tmp_path / "sales.csv"
    rows.to_csv(path, index=False)
    typed = validate(pd.read_csv(path), sales_spec.schema)
    assert typed["date"].equals(rows["date"].reset_index(drop=True))


def test_missing_values_in_a_nullable_column_stay_missing_and_elsewhere_are_still_refused(
    sales_spec, rows
):
    nullable = {"transactions", "onpromotion", "family"}
    schema = sales_spec.schema.model_copy(
        update={
            "columns": tuple(
                c.model_copy(update={"nullable": c.name in nullable})
                for c in sales_spec.schema.columns
            )
        }
    )
    rows["onpromotion"] = rows["onpromotion"].astype(object)
    rows.loc[[3, 9], ["transactions", "onpromotion", "family"]] = None

    typed = validate(rows, schema)
    rows.loc[4, "class"] = np.nan

    assert typed["transactions"].isna().sum() == 2
    assert typed["onpromotion"].isna().tolist()[3] and typed["onpromotion"].tolist()[0] in (
        True,
        False,
    )
    assert typed["family"].isna().sum() == 2
    assert "column 'class': missing value in 1 row (5) (nullable=True in the schema" in problems(
        rows, schema
    )

"""Parquet column types a warehouse export holds (decimals, binary text, sentinel dates, lists and
structs) never crash a job: a type that can hold a valid value is read row by row (a bad row goes
to rejects with its reason), one that never can is refused before any task runs. The task path,
no Spark: what every partition runs."""

from __future__ import annotations

import dataclasses
import datetime as dt
from decimal import Decimal

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from batch import job, rows, tasks
from core.settings import Settings
from models import get_spec
from serving.runtime import serve_runtime


@pytest.fixture(scope="module")
def sales(production_tag):
    """The sales model as the service would serve it (compiled runtime), loaded once."""
    model, folder = job.resolve_model(Settings(model_tag=production_tag))
    model = dataclasses.replace(model, runtime="compiled", forced=True)
    loaded, ready = serve_runtime(model, folder)
    assert ready
    return model, loaded


@pytest.fixture(scope="module")
def rows_in(sales) -> pa.Table:
    """Ten valid rows of the sales model's features, as Arrow types them."""
    model, _ = sales
    frame = get_spec("sales").default_data(42).head(10)[list(model.schema.features)]
    return pa.Table.from_pandas(frame, preserve_index=False)


def score_file(sales, table: pa.Table, tmp_path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(predictions, rejects) of `table` written as Parquet and scored by the planned tasks."""
    model, loaded = sales
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "in.parquet"
    pq.write_table(table, path)
    staging = tmp_path / "staging"
    for kind in ("predictions", "rejects"):
        (staging / kind).mkdir(parents=True)
    for task in tasks.plan(path, "parquet", cores=1).tasks:
        tasks.run(task, model, loaded, rows.batch_model(model.schema), None, pa.int64(), staging)
    return (
        pd.read_parquet(staging / "predictions").sort_values("id").reset_index(drop=True),
        pd.read_parquet(staging / "rejects").sort_values("id").reset_index(drop=True),
    )


def replaced(table: pa.Table, name: str, values: pa.Array) -> pa.Table:
    return table.set_column(table.schema.get_field_index(name), name, values)


def test_decimal_columns_are_scored_as_the_integers_they_hold_and_a_fraction_is_a_rejected_row(
    sales, rows_in, tmp_path
):
    expected, _ = score_file(sales, rows_in, tmp_path / "ints")
    decimals = rows_in
    for name in ("item_nbr", "class"):
        ints = rows_in.column(name).to_pylist()
        decimals = replaced(decimals, name, pa.array(map(Decimal, ints), pa.decimal128(10, 0)))
    halves = [Decimal(v) for v in rows_in.column("class").to_pylist()]
    halves[4] += Decimal("0.5")
    fraction = replaced(decimals, "class", pa.array(halves, pa.decimal128(12, 1)))

    predictions, rejects = score_file(sales, decimals, tmp_path / "decimals")
    some, refused = score_file(sales, fraction, tmp_path / "fraction")

    assert predictions["prediction"].tolist() == expected["prediction"].tolist()
    assert len(rejects) == 0
    assert refused["id"].tolist() == [5] and refused["field"].tolist() == ["class"]
    assert "got a number" in refused["reason"][0] and "integer" in refused["reason"][0]
    assert some["prediction"].tolist() == expected["prediction"].drop(index=4).tolist()


@pytest.mark.parametrize("arrow_type", [pa.date32(), pa.timestamp("us")], ids=str)
def test_a_sentinel_date_rejects_its_row_naming_the_column_and_date_and_the_rest_are_scored(
    sales, rows_in, tmp_path, arrow_type
):
    expected, _ = score_file(sales, rows_in, tmp_path / "plain")
    days = [d.date() for d in rows_in.column("date").to_pylist()]
    days[2], days[6] = dt.date(9999, 12, 31), dt.date(1, 1, 1)
    if arrow_type == pa.timestamp("us"):
        days = [dt.datetime.combine(d, dt.time()) for d in days]
    sentinel = replaced(rows_in, "date", pa.array(days, arrow_type))

    predictions, rejects = score_file(sales, sentinel, tmp_path / "sentinel")

    assert rejects["id"].tolist() == [3, 7] and rejects["field"].tolist() == ["date", "date"]
    assert "9999-12-31" in rejects["reason"][0] and "0001-01-01" in rejects["reason"][1]
    assert all(r.startswith("date: ") for r in rejects["reason"])
    assert predictions["id"].tolist() == [1, 2, 4, 5, 6, 8, 9, 10]
    assert predictions["prediction"].tolist() == expected["prediction"].drop(index=[2, 6]).tolist()


def test_a_binary_text_column_is_read_as_utf8_and_bytes_that_are_not_utf8_reject_their_row(
    sales, rows_in, tmp_path
):
    expected, _ = score_file(sales, rows_in, tmp_path / "text")
    family = [v.encode() for v in rows_in.column("family").to_pylist()]
    family[3] = b"\xffGROCERY"
    binary = replaced(rows_in, "family", pa.array(family, pa.binary()))

    predictions, rejects = score_file(sales, binary, tmp_path / "binary")

    assert rejects["id"].tolist() == [4] and rejects["field"].tolist() == ["family"]
    assert "UTF-8" in rejects["reason"][0]
    assert predictions["prediction"].tolist() == expected["prediction"].drop(index=3).tolist()


def test_a_list_struct_or_binary_column_that_can_never_be_valid_is_refused_before_any_task(
    rows_in, sales, tmp_path
):
    model, _ = sales
    n = rows_in.num_rows
    lists = replaced(rows_in, "class", pa.array([[1, 2]] * n, pa.list_(pa.int64())))
    lists = replaced(lists, "family", pa.array([{"a": "DAIRY"}] * n))
    lists = replaced(lists, "item_nbr", pa.array([b"1"] * n, pa.binary()))
    pq.write_table(lists, tmp_path / "lists.parquet")
    planned = tasks.plan(tmp_path / "lists.parquet", "parquet", cores=1)

    with pytest.raises(rows.UnusableColumns) as refused:
        rows.check_types(planned.types, model.schema)

    why = str(refused.value)
    assert "'class' is list<element: int64>" in why
    assert "'family' is struct<a: string>" in why
    assert "'item_nbr' is binary" in why
    rows.check_types({"family": [pa.binary()]}, model.schema)  # text is due: read row by row

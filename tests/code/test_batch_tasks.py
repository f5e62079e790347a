"""The driver's task plan (batch/tasks.py) from file metadata alone, and what each task reads: every
row once, numbered as the input orders it (files in path order, rows in file order). No Spark."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from batch import tasks


def read_all(plan: tasks.Plan, columns: list[str]) -> list[tuple[int, dict]]:
    """(row number, row) for every row every task reads, in task order."""
    out = []
    for task in plan.tasks:
        n = 0
        for table in tasks.read(task, columns):
            for row in table.to_pylist():
                out.append((task.first + n, row))
                n += 1
        assert n == task.rows, f"task {task.index} read {n} rows, planned {task.rows}"
    return out


def test_a_one_row_group_parquet_file_is_split_into_two_tasks_a_core_read_from_the_footer(
    tmp_path,
):
    path = tmp_path / "one.parquet"
    pq.write_table(pa.table({"x": list(range(1001))}), path, row_group_size=10_000)
    assert pq.ParquetFile(path).metadata.num_row_groups == 1

    plan = tasks.plan(path, "parquet", cores=2)

    assert plan.rows == 1001 and plan.columns == ["x"]
    assert [(t.start, t.stop, t.first) for t in plan.tasks] == [
        (0, 251, 1),
        (251, 502, 252),
        (502, 753, 503),
        (753, 1001, 754),
    ]
    assert read_all(plan, ["x"]) == [(i + 1, {"x": i}) for i in range(1001)]


def test_tasks_across_row_groups_and_files_read_every_row_once_numbered_in_path_order(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    # b is bigger, written first, and has row groups smaller than a task: numbering still
    # follows the path order (a, b), then the rows' order in each file.
    pq.write_table(pa.table({"x": list(range(100, 1100))}), folder / "b.parquet", row_group_size=70)
    pq.write_table(pa.table({"x": [0, 1, 2]}), folder / "a.parquet")
    (folder / "_SUCCESS").touch()  # markers and hidden files are not input, as for Spark
    pq.write_table(pa.table({"x": [-1]}), folder / ".hidden.parquet")

    plan = tasks.plan(folder, "parquet", cores=3)

    assert plan.rows == 1003
    assert len(plan.tasks) >= 6
    got = read_all(plan, ["x"])
    assert [n for n, _ in got] == list(range(1, 1004))
    assert [r["x"] for _, r in got] == [0, 1, 2, *range(100, 1100)]


def test_nanosecond_timestamps_are_read_by_the_task_as_they_were_written(tmp_path):
    when = pd.to_datetime(["2017-08-01 00:00:00.000000001", "2017-08-02 00:00:00.000000000"])
    pd.DataFrame({"date": when}).to_parquet(tmp_path / "ns.parquet", index=False)
    assert pq.read_schema(tmp_path / "ns.parquet").field("date").type == pa.timestamp("ns")

    plan = tasks.plan(tmp_path / "ns.parquet", "parquet", cores=1)

    table = pa.concat_tables(t for task in plan.tasks for t in tasks.read(task, ["date"]))
    assert table.to_pandas()["date"].tolist() == when.tolist()


def test_csv_tasks_are_whole_lines_and_read_cells_as_text_like_sparks_csv_reader(tmp_path):
    path = tmp_path / "in.csv"
    lines = ["a,b,c"] + [f"{i},x{i},{i * 2}" for i in range(40)]
    lines[5] = ""  # an empty line is no row
    lines[7] = '4,"quoted, with a comma",'  # a quoted comma; an empty cell is null
    lines[9] = "6"  # a short row: nulls
    lines[11] = "8,y,z,extra"  # a long row: cut to the header
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode())

    plan = tasks.plan(path, "csv", cores=2)

    assert plan.columns == ["a", "b", "c"]
    assert plan.rows == 39 and len(plan.tasks) == 4
    got = read_all(plan, ["c", "a", "b"])
    assert [n for n, _ in got] == list(range(1, 40))
    rows = [r for _, r in got]
    assert rows[0] == {"c": "0", "a": "0", "b": "x0"}
    assert rows[5] == {"c": None, "a": "4", "b": "quoted, with a comma"}
    assert rows[7] == {"c": None, "a": "6", "b": None}
    assert rows[9] == {"c": "z", "a": "8", "b": "y"}
    assert rows[-1] == {"c": "78", "a": "39", "b": "x39"}


def test_an_input_without_rows_plans_no_task_but_knows_its_columns(tmp_path):
    (tmp_path / "empty.csv").write_text("a,b\n")
    pq.write_table(pa.table({"x": pa.array([], pa.int64())}), tmp_path / "empty.parquet")

    for name, fmt, columns in (
        ("empty.csv", "csv", ["a", "b"]),
        ("empty.parquet", "parquet", ["x"]),
    ):
        plan = tasks.plan(tmp_path / name, fmt, cores=2)
        assert (plan.rows, plan.tasks, plan.columns) == (0, [], columns)


def test_a_damaged_parquet_file_is_refused_by_the_planner_naming_the_file(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    pq.write_table(pa.table({"x": [1, 2]}), folder / "a.parquet")
    (folder / "b.parquet").write_bytes(b"not parquet at all")

    try:
        tasks.plan(folder, "parquet", cores=2)
    except tasks.Unreadable as exc:
        assert str(exc).startswith(f"{folder / 'b.parquet'}: not a readable Parquet file")
    else:
        raise AssertionError("a damaged file was planned")


def test_the_plans_columns_are_those_every_file_has_and_other_files_are_not_input(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    pq.write_table(pa.table({"x": [1], "y": [2], "z": [3]}), folder / "a.parquet")
    pq.write_table(pa.table({"z": [4], "x": [5]}), folder / "b.parquet")
    (folder / "notes.txt").write_text("not input")
    (folder / "c.csv").write_text("x,y\n1,2\n")

    plan = tasks.plan(folder, "parquet", cores=1)

    assert plan.columns == ["x", "z"]
    assert [Path(t.path).name for t in plan.tasks] == ["a.parquet", "b.parquet"]
    csv_plan = tasks.plan(folder, "csv", cores=1)
    assert (csv_plan.columns, csv_plan.rows) == (["x", "y"], 1)

"""The monitoring store: prediction logs read incrementally (rotation, a line being written, lines
that are not records), actuals from the log and from a CSV file (validated whole, exit 2 naming
line and column, nothing stored), and the join key of multi-record requests."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from core.settings import ROOT
from models import actuals
from models import config as model_config
from monitoring import store, synthetic
from monitoring.__main__ import main
from monitoring.feedback import FeedbackError, read

NOW = datetime(2026, 12, 4, 14, 0, tzinfo=UTC)
RECORD = {"date": "2017-08-01", "item_nbr": 1, "family": "GROCERY I", "class": 1003}


def lines(prefix: str, count: int, records: int = 1) -> list[str]:
    return [
        synthetic.prediction_line(
            f"{prefix}{i}",
            NOW + timedelta(seconds=i),
            "sales:abc",
            [RECORD] * records,
            [float(i)] * records,
            1.5,
        )
        for i in range(count)
    ]


def rows(con, table: str = "predictions") -> int:
    return con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


@pytest.fixture
def con(tmp_path):
    with store.connect(tmp_path / "db" / "store.duckdb") as c:
        yield c


def test_each_record_of_a_request_is_a_row_keyed_by_request_id_and_index(con, tmp_path):
    synthetic.write_lines(tmp_path / "predictions.jsonl", lines("one", 1) + lines("multi", 1, 3))
    got = store.ingest_predictions(con, tmp_path)
    keys = [r[0] for r in con.execute("SELECT key FROM predictions ORDER BY key").fetchall()]
    assert got.rows == 4
    assert keys == ["multi0#0", "multi0#1", "multi0#2", "one0"]


def test_a_second_ingest_reads_only_the_lines_appended_since(con, tmp_path):
    synthetic.write_lines(tmp_path / "predictions.jsonl", lines("a", 5))
    store.ingest_predictions(con, tmp_path)
    synthetic.write_lines(tmp_path / "predictions.jsonl", lines("b", 3))
    again = store.ingest_predictions(con, tmp_path)
    assert (again.lines, rows(con)) == (3, 8)


def test_a_rotated_file_keeps_its_offset_under_its_new_name(con, tmp_path):
    log = tmp_path / "predictions.jsonl"
    synthetic.write_lines(log, lines("a", 5))
    store.ingest_predictions(con, tmp_path)
    synthetic.write_lines(log, lines("b", 2))  # written before the rotation, not yet read
    os.rename(log, tmp_path / "predictions.jsonl.1")
    synthetic.write_lines(log, lines("c", 4))
    again = store.ingest_predictions(con, tmp_path)
    assert (again.lines, rows(con)) == (6, 11)
    assert rows(con) == con.execute("SELECT count(DISTINCT key) FROM predictions").fetchone()[0]


def test_a_line_still_being_written_is_read_on_the_next_run(con, tmp_path):
    log = tmp_path / "predictions.jsonl"
    whole, *_ = lines("a", 1)
    log.write_text(whole + "\n" + whole[:30])
    assert store.ingest_predictions(con, tmp_path).rows == 1
    with open(log, "a") as f:
        f.write(whole[30:].replace('"a0"', '"a1"') + "\n")
    assert store.ingest_predictions(con, tmp_path).rows == 1
    assert rows(con) == 2


def test_lines_that_are_not_records_are_counted_and_not_stored(con, tmp_path):
    synthetic.write_lines(tmp_path / "predictions.jsonl", ["not json", "{}", *lines("a", 2)])
    got = store.ingest_predictions(con, tmp_path)
    assert (got.rows, got.unreadable) == (2, 2)


def test_a_log_truncated_in_place_is_read_again_from_its_start(con, tmp_path):
    log = tmp_path / "predictions.jsonl"
    synthetic.write_lines(log, lines("a", 5))
    store.ingest_predictions(con, tmp_path)
    synthetic.write_lines(log, lines("b", 2), mode="w")
    assert store.ingest_predictions(con, tmp_path).rows == 2


def test_actuals_from_the_log_are_stored_with_their_key(con, tmp_path):
    synthetic.write_lines(
        tmp_path / "actuals.jsonl",
        [synthetic.actual_line("r1", 3.0, NOW), synthetic.actual_line("r2#1", 4.0, NOW)],
    )
    store.ingest_actuals(con, tmp_path)
    got = con.execute("SELECT key, CAST(actual AS DOUBLE) FROM actuals ORDER BY key").fetchall()
    assert got == [("r1", 3.0), ("r2#1", 4.0)]


def test_the_store_is_readable_by_its_owner_only(tmp_path):
    path = tmp_path / "s.duckdb"
    with store.connect(path):
        pass
    assert path.stat().st_mode & 0o077 == 0


def feedback(tmp_path: Path, text: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "actuals.csv").write_text(text)
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "monitoring",
            "feedback",
            "production",
            "--model",
            "sales",
            "--file",
            str(tmp_path / "actuals.csv"),
        ],
        cwd=ROOT,
        env={**os.environ, "BENTOGATE_MONITOR_DIR": str(tmp_path / "monitor")},
        capture_output=True,
        text=True,
        timeout=180,
    )


def stored(tmp_path: Path) -> int:
    path = store.database(tmp_path / "monitor", "production", "sales")
    if not path.exists():
        return 0
    with store.connect(path) as c:
        return rows(c, "actuals")


def test_feedback_file_rows_are_stored(tmp_path):
    result = feedback(
        tmp_path,
        "request_id,actual,observed_at\nr1,3.5,2026-12-04T10:00:00Z\nr2#0,0,2026-12-04T10:00:00+00:00\n",
    )
    assert result.returncode == 0, result.stderr
    assert "stored 2 actuals" in result.stdout
    assert stored(tmp_path) == 2


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ("r1,3.5,2026-12-04T10:00:00Z\nr2,lots,2026-12-04T10:00:00Z\n", ":3: column 'actual'"),
        ("r1,3.5,yesterday\n", ":2: column 'observed_at'"),
        ("r1,3.5,2026-12-04T10:00:00\n", ":2: column 'observed_at'"),
        (",3.5,2026-12-04T10:00:00Z\n", ":2: column 'request_id'"),
        ("r1,nan,2026-12-04T10:00:00Z\n", ":2: column 'actual'"),
        # As POST /feedback: a number a float cannot hold would break every later monitor run.
        ("r1," + "9" * 400 + ",2026-12-04T10:00:00Z\n", ":2: column 'actual': .* not a finite"),
    ],
)
def test_a_bad_feedback_cell_is_refused_naming_line_and_column(tmp_path, body, where):
    path = tmp_path / "actuals.csv"
    path.write_text("request_id,actual,observed_at\n" + body)
    with pytest.raises(FeedbackError, match=where):
        read(path, actuals.rule("regression"))


def test_a_feedback_file_without_a_required_column_is_refused(tmp_path):
    path = tmp_path / "actuals.csv"
    path.write_text("request_id,value\nr1,3\n")
    with pytest.raises(FeedbackError, match=r":1: missing column\(s\) actual, observed_at"):
        read(path, actuals.rule("regression"))


def test_a_feedback_file_saved_by_excel_with_a_byte_order_mark_is_read(tmp_path):
    path = tmp_path / "actuals.csv"
    path.write_bytes(b"\xef\xbb\xbfrequest_id,actual,observed_at\nr1,3.5,2026-12-04T10:00:00Z\n")
    assert read(path, actuals.rule("regression")) == [("r1", "3.5", "2026-12-04T10:00:00+00:00")]


def test_a_byte_that_is_not_utf8_is_refused_naming_its_line(tmp_path):
    path = tmp_path / "actuals.csv"
    path.write_bytes(
        b"request_id,actual,observed_at\nr1,3.5,2026-12-04T10:00:00Z\nr2,s\xe9v,2026-12-04T10:00:00Z\n"
    )
    with pytest.raises(FeedbackError, match=r"actuals\.csv:3: not UTF-8 text: byte 0xe9"):
        read(path, actuals.rule("classification"))


def test_a_feedback_file_with_a_header_and_no_rows_exits_2_naming_it(tmp_path):
    result = feedback(tmp_path, "request_id,actual,observed_at\n")
    assert result.returncode == 2, result.stderr
    assert result.stderr == f"error: {tmp_path / 'actuals.csv'}: no rows\n"
    assert stored(tmp_path) == 0


def test_the_feedback_command_exits_2_on_a_bad_file_and_stores_nothing(tmp_path):
    result = feedback(tmp_path, "request_id,actual,observed_at\nr1,3.5,Z\nr2,lots,Z\n")
    assert result.returncode == 2
    assert result.stderr.strip().endswith(
        ":2: column 'observed_at': 'Z' is not an ISO 8601 time (e.g. 2026-12-04T14:00:00+00:00)"
    )
    assert len(result.stderr.strip().splitlines()) == 1
    assert stored(tmp_path) == 0


def test_router_errors_are_read_from_its_access_log_predict_lines_only(con, tmp_path):
    line = (
        '{{"time":"2026-12-04T14:00:0{i}+00:00","request_id":"x{i}","method":"POST",'
        '"uri":"{uri}","status":{status},"routed_to":"r0002","answered_by":"{by}"}}'
    )
    synthetic.write_lines(
        tmp_path / "access.log",
        [
            line.format(i=0, uri="/predict", status=200, by="r0002"),
            line.format(i=1, uri="/predict", status=503, by=""),
            line.format(i=2, uri="/readyz", status=200, by="r0002"),
        ],
    )
    assert store.ingest_access(con, tmp_path).rows == 2
    got = con.execute("SELECT status, coalesce(answered_by, routed_to) FROM access ORDER BY status")
    assert got.fetchall() == [(200, "r0002"), (503, "r0002")]


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (
            ["--window", "24 hours"],
            "error: window '24 hours': expected a positive number and m, h, d or w, e.g. 24h,"
            " of at most 520w",
        ),
        (
            ["--window", "99999999999w"],
            "error: window '99999999999w': expected a positive number and m, h, d or w,"
            " e.g. 24h, of at most 520w",
        ),
        (
            ["--now", "0001-01-01T00:00:00+00:00"],
            "error: --now '0001-01-01T00:00:00+00:00': expected a time after 2000",
        ),
        (["--logs", "/nonexistent/logs"], "error: --logs /nonexistent/logs: no such folder"),
    ],
    ids=["bad window", "endless window", "time before the window", "logs folder mistyped"],
)
def test_the_monitor_exits_2_naming_a_bad_argument_and_writes_no_report(tmp_path, args, said):
    result = subprocess.run(
        [sys.executable, "-m", "monitoring", "run", "production", *args],
        cwd=ROOT,
        env={**os.environ, "BENTOGATE_REPORTS_DIR": str(tmp_path / "reports")},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == said
    assert not (tmp_path / "reports").exists()


def test_actuals_join_their_records_single_and_multi_record_latest_actual_winning(con, tmp_path):
    from monitoring.monitor import JOINED, versions

    synthetic.write_lines(tmp_path / "predictions.jsonl", lines("one", 1) + lines("multi", 1, 3))
    synthetic.write_lines(
        tmp_path / "actuals.jsonl",
        [
            synthetic.actual_line("one0", 1.0, NOW),
            synthetic.actual_line("one0", 2.0, NOW + timedelta(hours=1)),  # a correction
            synthetic.actual_line("multi0#2", 7.0, NOW),
            synthetic.actual_line("nobody", 9.0, NOW),
        ],
    )
    store.ingest_predictions(con, tmp_path)
    store.ingest_actuals(con, tmp_path)
    versions(con, NOW - timedelta(hours=1), NOW + timedelta(hours=1))  # the served view
    joined = con.execute(JOINED).df()
    got = sorted(zip(joined["prediction"], joined["actual"], strict=True))
    assert got == [("0.0", "2.0"), ("0.0", "7.0")]


def test_a_request_logged_twice_counts_once_as_the_fallback_that_answered(con, tmp_path):
    from monitoring.monitor import versions

    late = synthetic.prediction_line("x", NOW, "sales:abc", [RECORD], [1.0], 900.0, "r0002", False)
    answered = synthetic.prediction_line(
        "x", NOW, "sales:abc", [RECORD], [2.0], 80.0, "r0001", True
    )
    answered = answered.replace('"routed_to":"r0001"', '"routed_to":"r0002"')
    synthetic.write_lines(tmp_path / "predictions.jsonl", [answered, late])
    store.ingest_predictions(con, tmp_path)
    got = {v.version: (v.requests, v.fallbacks) for v in versions(con, NOW, NOW + timedelta(1))}
    assert got == {"r0001": (1, 0)}


def test_the_monitor_exits_2_on_an_on_breach_environment_typo_before_any_work(
    tmp_path, monkeypatch, capsys
):
    monitor_config = tmp_path / "monitor.yaml"
    monitor_config.write_text("on_breach:\n  prod: rollback\n")
    for name, value in {
        "MONITOR_CONFIG": monitor_config,
        "REPORTS_DIR": tmp_path / "reports",
        "DEPLOY_DIR": tmp_path / "deploy",
        "MONITOR_DIR": tmp_path / "monitor",
    }.items():
        monkeypatch.setenv(f"BENTOGATE_{name}", str(value))
    assert main(["run", "production"]) == 2
    assert "monitor.yaml:2: on_breach.prod: no environment 'prod'" in capsys.readouterr().err
    assert not (tmp_path / "reports").exists() and not (tmp_path / "monitor").exists()


def test_the_monitor_exits_2_on_a_misspelt_gate_metric_before_any_work(
    tmp_path, monkeypatch, capsys
):
    package = tmp_path / "models" / "sales"
    package.mkdir(parents=True)
    (package / "config.yaml").write_text("seed: 1\ngate:\n  thresholds:\n    rsme: '< 5'\n")
    monkeypatch.setattr(model_config, "MODELS_DIR", tmp_path / "models")
    for name in ("REPORTS_DIR", "DEPLOY_DIR", "MONITOR_DIR"):
        monkeypatch.setenv(f"BENTOGATE_{name}", str(tmp_path / name.lower()))
    assert main(["run", "production", "--model", "sales"]) == 2
    assert "config.yaml:4: gate.thresholds.rsme: no metric 'rsme'" in capsys.readouterr().err
    assert not (tmp_path / "reports_dir").exists() and not (tmp_path / "monitor_dir").exists()

"""The prediction and actuals logs: their record formats (the monitoring job's contract), files
readable by their owner only, rotation by size, and two processes appending to one file."""

from __future__ import annotations

import datetime as dt
import json
import multiprocessing
import os
import stat
import time
from pathlib import Path

from serving import predlog
from serving.predlog import OFF, JsonLinesLog, actual_records, prediction_record

AT = dt.datetime(2026, 12, 4, 15, 0, 1, 234000, tzinfo=dt.UTC).timestamp()


def lines_of(*paths: Path) -> list[dict]:
    return [json.loads(x) for p in paths if p.exists() for x in p.read_text().splitlines()]


def test_a_prediction_record_has_every_field_of_the_documented_format():
    line = prediction_record(
        AT, "req-1", "sales:abc", "r0002", None, 1.23456, [{"x": 1}], {"predictions": [2.5]}
    )
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert json.loads(line) == {
        "event": "prediction",
        "time": "2026-12-04T15:00:01.234+00:00",
        "request_id": "req-1",
        "model": "sales:abc",
        "release": "r0002",
        "routed_to": None,
        "fallback": False,
        "latency_ms": 1.235,
        "inputs": [{"x": 1}],
        "outputs": {"predictions": [2.5]},
    }


def test_a_prediction_answered_by_another_release_than_the_routed_one_is_a_fallback():
    def record(release, routed_to):
        return json.loads(prediction_record(AT, "r", "m", release, routed_to, 1, [], {}))

    assert record("r0001", "r0002")["fallback"] is True
    assert record("r0002", "r0002")["fallback"] is False
    assert record(None, None)["fallback"] is False


def test_dates_in_inputs_are_written_as_iso_dates():
    line = prediction_record(AT, "r", "m", None, None, 1, [{"date": dt.date(2017, 8, 1)}], {})
    assert json.loads(line)["inputs"] == [{"date": "2017-08-01"}]


def test_actual_records_default_observed_at_to_the_receipt_and_read_a_naive_time_as_utc():
    lines = actual_records(
        [
            ("a", 3.5, None),
            ("b", "yes", dt.datetime(2026, 12, 1, 10, 0)),
            ("c", 1, dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.timezone(dt.timedelta(hours=2)))),
        ],
        AT,
        "sales:abc",
        None,
    )
    a, b, c = (json.loads(x) for x in lines.splitlines())
    assert a == {
        "event": "actual",
        "request_id": "a",
        "actual": 3.5,
        "observed_at": "2026-12-04T15:00:01.234+00:00",
        "received_at": "2026-12-04T15:00:01.234+00:00",
        "model": "sales:abc",
        "release": None,
    }
    assert b["observed_at"] == "2026-12-01T10:00:00.000+00:00"
    assert c["observed_at"] == "2026-12-01T10:00:00.000+00:00"
    assert (b["actual"], c["actual"]) == ("yes", 1)


def test_the_log_file_is_readable_by_its_owner_only_even_if_it_existed_before(tmp_path):
    fresh = tmp_path / "logs" / "predictions.jsonl"
    older = tmp_path / "older.jsonl"
    older.write_text("")
    older.chmod(0o644)
    for path in (fresh, older):
        log = JsonLinesLog(path)
        log.append(b"{}\n")
        log.close()
        assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_every_line_reaches_the_file_in_order_as_soon_as_it_is_appended(tmp_path):
    path = tmp_path / "p.jsonl"
    log = JsonLinesLog(path)
    for i in range(300):
        log.append(prediction_record(AT, f"req-{i}", "m", None, None, 1, [{"x": i}], {}))
        if i == 150:  # no buffer in the process: already in the file
            assert lines_of(path)[-1]["request_id"] == "req-150"
    log.close()
    assert [x["request_id"] for x in lines_of(path)] == [f"req-{i}" for i in range(300)]


def test_a_full_file_is_rotated_and_only_the_newest_files_are_kept(tmp_path):
    path = tmp_path / "p.jsonl"
    log = JsonLinesLog(path, max_bytes=4096, keep=3)
    line = b'{"n": %d, "pad": "' + b"x" * 80 + b'"}\n'
    for i in range(1000):  # ~100 KB: many rotations
        log.append(line % i)
    log.close()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["p.jsonl", "p.jsonl.1", "p.jsonl.2", "p.jsonl.3", "p.jsonl.lock"]
    kept = lines_of(*(tmp_path / f"p.jsonl.{i}" for i in (3, 2, 1)), path)
    numbers = [x["n"] for x in kept]
    assert numbers == list(range(numbers[0], 1000))  # the newest, in order, none missing
    assert all(p.stat().st_size < 4096 + 200 for p in tmp_path.glob("p.jsonl*"))


def _writer(path: Path, name: str, count: int) -> None:
    log = JsonLinesLog(path, max_bytes=8192, keep=1000)
    for i in range(count):
        log.append(b'{"w": "%s", "i": %d, "pad": "%s"}\n' % (name.encode(), i, b"y" * 60))
    log.close()


def test_two_processes_appending_and_rotating_one_log_lose_and_tear_no_line(tmp_path):
    path = tmp_path / "p.jsonl"
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_writer, args=(path, w, 3000)) for w in ("a", "b")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0]
    rotated = sorted(tmp_path.glob("p.jsonl.*[0-9]"), key=lambda p: -int(p.suffix[1:]))
    assert len(rotated) > 10
    kept = lines_of(*rotated, path)  # every line parses: none torn
    for w in ("a", "b"):
        assert sorted(x["i"] for x in kept if x["w"] == w) == list(range(3000))


def test_off_writes_nothing_and_unset_writes_to_standard_output(tmp_path, capfd):
    off = JsonLinesLog(OFF)
    off.append(b'{"a": 1}\n')
    assert not off.enabled
    out = JsonLinesLog(None)
    out.append(b'{"b": 2}\n')
    assert capfd.readouterr().out == '{"b": 2}\n'
    assert list(tmp_path.iterdir()) == []
    assert os.fstat(1)  # standard output is still open after close
    out.close()


def test_a_writer_whose_file_another_rotated_away_writes_its_next_line_to_the_current_file(
    tmp_path,
):
    path = tmp_path / "p.jsonl"
    idle = JsonLinesLog(path, max_bytes=4096, keep=2)  # e.g. the previous release, rarely asked
    busy = JsonLinesLog(path, max_bytes=4096, keep=2)
    idle.append(b'{"who": "idle", "n": 0}\n')
    for i in range(300):  # ~30 KB: rotated past keep, the file idle holds open is dropped
        busy.append(b'{"who": "busy", "n": %d, "pad": "%s"}\n' % (i, b"z" * 80))
    time.sleep(2 * predlog.IDLE_S)  # idle is asked again later than busy's pace
    idle.append(b'{"who": "idle", "n": 1}\n')
    assert {"who": "idle", "n": 1} in lines_of(path)
    idle.close()
    busy.close()


def test_a_busy_writer_follows_a_file_moved_away_by_another_within_the_path_check(
    tmp_path, monkeypatch
):
    monkeypatch.setattr(
        predlog, "PATH_CHECK_S", 0.5
    )  # wide: a stalled worker must not seem "at once"
    path = tmp_path / "p.jsonl"
    log = JsonLinesLog(path)
    log.append(b'{"n": 0}\n')
    path.rename(tmp_path / "moved.jsonl")  # e.g. logrotate's rename
    n, deadline = 0, time.monotonic() + 5
    while (
        not path.exists() and time.monotonic() < deadline
    ):  # never idle: no look but the timed one
        n += 1
        log.append(b'{"n": %d}\n' % n)
    log.append(b'{"n": %d}\n' % (n + 1))
    log.close()
    moved = [x["n"] for x in lines_of(tmp_path / "moved.jsonl")]
    current = [x["n"] for x in lines_of(path)]
    assert moved + current == list(range(n + 2))  # nothing lost on the way
    assert current[-1] == n + 1 and len(moved) > 1  # the move was followed, and not at once

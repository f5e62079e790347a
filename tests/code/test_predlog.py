"""The prediction log keeps every line, in order, as JSON."""

from __future__ import annotations

import json

from serving.predlog import PredictionLog


def test_every_prediction_line_reaches_the_file_in_order(tmp_path):
    path = tmp_path / "logs" / "predictions.jsonl"
    log = PredictionLog(path, flush_interval_s=0.001)
    for i in range(500):
        log.write(f"req-{i}", "sales:abc", [{"x": i}], {"predictions": [i * 0.5]}, 1.25)
    log.close()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line["request_id"] for line in lines] == [f"req-{i}" for i in range(500)]
    assert lines[7]["inputs"] == [{"x": 7}]
    assert lines[7]["outputs"] == {"predictions": [3.5]}
    assert lines[0]["model"] == "sales:abc"


def test_closing_twice_is_harmless(tmp_path):
    log = PredictionLog(tmp_path / "p.jsonl")
    log.close()
    log.close()

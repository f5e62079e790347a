"""`make pipeline` resumes where it stopped (deploy/resume.py): which recorded step is skipped, and
what counts as the same inputs. In-process, on files in a temporary folder."""

from __future__ import annotations

import json

from deploy import resume
from deploy.resume import config_digest, decide, dry_run, files_digest, start

INPUTS = {"code": "c1", "config": "k1", "production": "sales:p1"}
DONE = {"status": "done", "inputs": INPUTS, "candidate": "sales:abc"}


def test_a_step_done_with_the_same_inputs_and_its_output_in_place_is_skipped():
    decision = decide(DONE, INPUTS, output_problem=None)
    assert decision.skip


def test_a_step_whose_inputs_changed_runs_naming_what_changed():
    decision = decide(DONE, {**INPUTS, "config": "k2", "production": "sales:p2"}, None)
    assert not decision.skip
    assert decision.reason == "changed since it ran: config, production"


def test_a_step_that_failed_last_time_runs_again():
    decision = decide({**DONE, "status": "failed"}, INPUTS, None)
    assert not decision.skip
    assert decision.reason == "it failed last time"


def test_a_step_killed_while_running_runs_again():
    assert (
        decide({**DONE, "status": "running"}, INPUTS, None).reason == "it did not finish last time"
    )


def test_a_step_whose_output_is_gone_runs_again_saying_so():
    decision = decide(DONE, INPUTS, "sales:abc is no longer in the model store")
    assert not decision.skip
    assert decision.reason == "sales:abc is no longer in the model store"


def test_a_step_without_a_record_or_its_inputs_runs():
    assert not decide(None, INPUTS, None).skip
    assert not decide(DONE, None, None).skip


def test_training_inputs_ignore_the_load_test_and_deploy_sections_of_the_model_config(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("seed: 1\nparams: {lr: 0.1}\nloadtest: {thresholds: {p90: '< 50ms'}}\n")
    before = config_digest(config)
    config.write_text("seed: 1\nparams: {lr: 0.1}\nloadtest: {thresholds: {p90: '< 90ms'}}\n")
    assert config_digest(config) == before
    config.write_text("seed: 1\nparams: {lr: 0.2}\nloadtest: {thresholds: {p90: '< 90ms'}}\n")
    assert config_digest(config) != before


def test_an_unreadable_config_is_hashed_by_its_bytes_not_refused(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("seed: [1\n")
    assert config_digest(config) != config_digest(tmp_path / "missing.yaml")


def test_a_code_digest_follows_each_file_and_ignores_caches(tmp_path):
    (tmp_path / "pkg" / "__pycache__").mkdir(parents=True)
    (tmp_path / "pkg" / "a.py").write_text("x = 1\n")
    before = files_digest(tmp_path, ["pkg/*.py", "pkg/**/*"])
    (tmp_path / "pkg" / "__pycache__" / "a.cpython-311.pyc").write_bytes(b"\0")
    assert files_digest(tmp_path, ["pkg/*.py", "pkg/**/*"]) == before
    (tmp_path / "pkg" / "a.py").write_text("x = 2\n")
    assert files_digest(tmp_path, ["pkg/*.py", "pkg/**/*"]) != before


def record(path, **fields) -> None:
    path.write_text(json.dumps({"model": "sales", "steps": {"train": DONE}, **fields}))


def test_a_run_that_stopped_is_resumed(tmp_path, capsys):
    path = tmp_path / "pipeline.json"
    record(path, reached="loadtest", complete=False)
    start(path, "sales", fresh=False)
    assert json.loads(path.read_text())["steps"] == {"train": DONE}
    assert "resuming: the last run stopped at loadtest" in capsys.readouterr().out


def test_fresh_forgets_the_record_and_every_step_runs(tmp_path, capsys):
    path = tmp_path / "pipeline.json"
    record(path, reached="loadtest", complete=False)
    start(path, "sales", fresh=True)
    assert json.loads(path.read_text())["steps"] == {}
    assert "FRESH=1: every step runs" in capsys.readouterr().out


def test_a_completed_run_is_not_resumed(tmp_path):
    path = tmp_path / "pipeline.json"
    record(path, reached="deploy-production", complete=True)
    start(path, "sales", fresh=False)
    assert json.loads(path.read_text())["steps"] == {}


def test_an_unreadable_record_starts_afresh_saying_so(tmp_path, capsys):
    path = tmp_path / "pipeline.json"
    path.write_text("{not json")
    start(path, "sales", fresh=False)
    assert json.loads(path.read_text())["steps"] == {}
    assert "unreadable" in capsys.readouterr().out


def test_make_n_is_told_from_flags_and_variables():
    assert dry_run("n --no-print-directory")
    assert dry_run("ns")
    assert not dry_run("s -- MODEL=sales")
    assert not dry_run(" -- ENV=staging")
    assert not dry_run("--no-print-directory")


def test_a_step_that_failed_last_time_reruns_without_looking_up_an_output_it_never_had(
    tmp_path, monkeypatch, capsys
):
    # The output of a failed train (no candidate) was looked up as the tag "None": BentoML then
    # printed "Converting 'None' to lowercase" into every resumed `make pipeline`.
    looked_up = []
    inputs = {"code": "c"}
    monkeypatch.setitem(
        resume.STEPS,
        "train",
        (lambda s, steps: inputs, lambda s, rec: looked_up.append(rec) or None, "skipped"),
    )
    monkeypatch.setitem(resume.OUTPUTS, "train", lambda s: {"candidate": "sales:new"})
    monkeypatch.delenv("MAKEFLAGS", raising=False)
    path = tmp_path / "pipeline.json"
    failed = {"status": "failed", "exit": 1, "inputs": inputs}
    path.write_text(json.dumps({"model": "sales", "steps": {"train": failed}}))

    code = resume.step(path, "train", ["true"], resume.get_settings())

    assert code == 0
    assert looked_up == []
    assert "train: runs again: it failed last time" in capsys.readouterr().out

"""Every command line refuses a bad argument, or a malformed BENTOGATE_* variable, with exit 2 and
one line naming it (core/cli.py)."""

from __future__ import annotations

import importlib

import pytest

from core import cli
from tests.conftest import run_cli


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["-m", "training", "run", "--bogus"], "--bogus"),
        (["-m", "deploy", "smoke"], "env|url"),
        (["-m", "batch", "score", "--data", "x.csv"], "--out"),
        (["-m", "loadtests.gate", "--workers", "many"], "--workers"),
        (["-m", "monitoring", "run"], "env"),
        (["-m", "deploy", "down", "prodution"], "'prodution'"),  # a typo stops nothing
        (["-m", "deploy", "status", "--model", "sale"], "'sale'"),
        (
            ["-m", "models.scaffold", "x", "--data", "d.csv", "--target", "y", "--task", "z"],
            "--task",
        ),
    ],
    ids=[
        "training",
        "deploy",
        "batch",
        "loadtests",
        "monitoring",
        "down-environment",
        "status-model",
        "scaffold",
    ],
)
def test_a_bad_argument_is_refused_with_exit_2_and_one_line_naming_it(args, named, tmp_path):
    result = run_cli(*args, env={"BENTOML_HOME": str(tmp_path)}, timeout=120)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("error: ")
    assert named in result.stderr


@pytest.mark.parametrize(
    ("module", "argv"),
    [
        ("training.__main__", ["run"]),
        ("deploy.__main__", ["status", "staging"]),
        ("batch.__main__", ["score", "--data", "x.csv", "--out", "y.csv"]),
        ("loadtests.gate", []),
        ("monitoring.__main__", ["run", "staging"]),
        ("serving.dependencies", ["build/requirements.txt"]),
    ],
    ids=["training", "deploy", "batch", "loadtests", "monitoring", "dependencies"],
)
def test_a_malformed_setting_is_refused_with_exit_2_and_one_line_naming_it(
    module, argv, monkeypatch, capsys
):
    # In the test process: `python -m <module>` is `sys.exit(main())`.
    main = importlib.import_module(module).main
    monkeypatch.setenv("BENTOGATE_LOG_KEEP", "five")
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert (out, err) == (
        "",
        "error: BENTOGATE_LOG_KEEP: Input should be a valid integer,"
        " unable to parse string as an integer\n",
    )


def test_a_subcommand_parser_is_the_one_line_parser_too(capsys):
    parser = cli.ArgumentParser(prog="tool")
    parser.add_subparsers(dest="command", required=True).add_parser("run").add_argument(
        "--n", type=int
    )
    with pytest.raises(SystemExit) as exit_:
        parser.parse_args(["run", "--n", "x"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err == (
        "error: argument --n: invalid int value: 'x' (see tool run --help)\n"
    )


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["--workers", "100"], "argument --workers: expected 0 to 16, got 100"),
        (["--duration", "nan"], "argument --duration: expected 0.1 to 3600, got nan"),
        (["--duration", "-5"], "argument --duration: expected 0.1 to 3600, got -5"),
        (["--model-tag", "bad tag"], "argument --model-tag: expected a model tag"),
    ],
    ids=["too many workers", "nan duration", "negative duration", "malformed tag"],
)
def test_the_load_test_refuses_an_out_of_range_number_or_a_malformed_tag_before_starting(
    argv, said, capsys
):
    from loadtests import gate

    with pytest.raises(SystemExit) as exit_:
        gate.main(argv)
    assert exit_.value.code == 2
    assert capsys.readouterr().err.startswith(f"error: {said}")


@pytest.mark.parametrize("tag", ["sales:", "bad tag", "Sales:1"])
def test_promoting_a_malformed_tag_is_refused_naming_it(tag, capsys):
    from training.__main__ import main

    assert main(["promote", tag]) == 2
    assert capsys.readouterr().err == f"error: expected a model tag (name:version), got {tag!r}\n"


@pytest.mark.parametrize(
    ("variable", "value", "said"),
    [
        ("BENTOGATE_MODEL_TAG", "bad tag", "BENTOGATE_MODEL_TAG: String should match pattern"),
        ("BENTOGATE_PREDICTION_LOG", ".", "BENTOGATE_PREDICTION_LOG: Value error, . is a folder"),
        ("BENTOGATE_ACTUALS_LOG", "/tmp", "BENTOGATE_ACTUALS_LOG: Value error, /tmp is a folder"),
    ],
)
def test_a_setting_the_server_could_not_use_is_refused_when_read(
    variable, value, said, monkeypatch
):
    from core.settings import SettingsError, get_settings

    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as error:
        get_settings()
    assert str(error.value).startswith(said)


def test_a_smoke_test_of_a_malformed_url_is_refused_naming_it(capsys):
    from deploy.__main__ import main

    assert main(["smoke", "http://[::1"]) == 2
    assert capsys.readouterr().err.startswith("error: 'http://[::1': not a URL")

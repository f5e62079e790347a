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
        (
            ["-m", "models.scaffold", "x", "--data", "d.csv", "--target", "y", "--task", "z"],
            "--task",
        ),
    ],
    ids=["training", "deploy", "batch", "loadtests", "monitoring", "scaffold"],
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

"""The job-by-job runner of deliver.yml (tests/fixtures/actions.py) and the stand-in `gh` passes
exactly what a workflow passes, and refuses what it does not interpret (GitHub is mocked here)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from tests.fixtures import gh
from tests.fixtures.actions import RunnerError, WorkflowRun, parse_outputs

CHECKOUT = "actions/checkout@08c6903cd8c0fde910a37f88322edcfb5dd907a8"
UPLOAD = "actions/upload-artifact@ea165f8d65b6e75b540449e92b4886f43607fa02"
DOWNLOAD = "actions/download-artifact@d3f86a106a0bac45b974a628896c90dbdf5c8093"
ATTEST = "actions/attest-build-provenance@a2bbfa25375fe432b6a289bc6b6cd05ecd0c4c32"
STATUS = (
    "${{ contains(needs.*.result, 'failure') && 'failure' || (contains(needs.*.result, "
    "'cancelled') && 'cancelled' || 'success') }}"
)


@pytest.fixture
def origin(tmp_path: Path) -> Path:
    repo = tmp_path / "origin"
    repo.mkdir()
    (repo / "README").write_text("under test\n")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@invalid", "-c", "commit.gpgsign=false"]
    subprocess.run([*git, "init", "-q", "-b", "main"], cwd=repo, check=True)
    subprocess.run([*git, "add", "-A"], cwd=repo, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "x"], cwd=repo, check=True)
    return repo


def run(tmp_path: Path, origin: Path, jobs: dict) -> WorkflowRun:
    workflow = tmp_path / "wf.yml"
    workflow.write_text(yaml.safe_dump({"name": "t", "jobs": jobs}))
    wf = WorkflowRun(workflow, origin, tmp_path / "github", tmp_path / "venv")
    wf.execute()
    return wf


def job(*steps: dict, **extra) -> dict:
    return {"runs-on": "ubuntu-latest", "timeout-minutes": 1, "steps": list(steps), **extra}


def test_an_action_the_runner_does_not_interpret_fails_the_run(tmp_path, origin):
    with pytest.raises(RunnerError, match="actions/cache@v4 is not interpreted"):
        run(tmp_path, origin, {"a": job({"uses": "actions/cache@v4"})})


def test_an_expression_the_runner_does_not_interpret_fails_the_run(tmp_path, origin):
    with pytest.raises(RunnerError, match=r"github\.event_name"):
        run(tmp_path, origin, {"a": job({"run": "echo ${{ github.event_name }}"})})


def test_an_input_the_runner_does_not_interpret_fails_the_run(tmp_path, origin):
    step = {"uses": CHECKOUT, "with": {"fetch-depth": 0}}
    with pytest.raises(RunnerError, match="fetch-depth"):
        run(tmp_path, origin, {"a": job(step)})


def test_outputs_env_and_summary_pass_as_on_github(tmp_path, origin):
    first = job(
        {"uses": CHECKOUT},
        {
            "id": "s",
            "run": 'echo "tag=sales:1" >> "$GITHUB_OUTPUT"\n'
            'printf "notes<<EOF\\nline 1\\nline 2\\nEOF\\n" >> "$GITHUB_OUTPUT"\n'
            'echo "LATER=yes" >> "$GITHUB_ENV"\necho "# trained" >> "$GITHUB_STEP_SUMMARY"',
        },
        {"run": 'test "$LATER" = yes && test -f README'},
        outputs={"tag": "${{ steps.s.outputs.tag }}", "notes": "${{ steps.s.outputs.notes }}"},
    )
    second = job(
        {
            "run": 'test "$TAG" = sales:1 && echo "got $TAG" >> "$GITHUB_STEP_SUMMARY"',
            "env": {"TAG": "${{ needs.first.outputs.tag }}"},
        },
        needs="first",
    )
    wf = run(tmp_path, origin, {"first": first, "second": second})
    assert {n: r.result for n, r in wf.results.items()} == {"first": "success", "second": "success"}
    assert wf.results["first"].outputs == {"tag": "sales:1", "notes": "line 1\nline 2"}
    assert wf.results["first"].summary == "# trained\n"
    assert wf.results["second"].summary == "got sales:1\n"


def test_a_failed_step_skips_the_rest_but_always_steps_and_jobs(tmp_path, origin):
    jobs = {
        "a": job(
            {"run": "exit 3"},
            {"run": "echo never >> $GITHUB_STEP_SUMMARY"},
            {"if": "always()", "run": "echo cleanup >> $GITHUB_STEP_SUMMARY"},
        ),
        "b": job({"run": "true"}, needs="a"),
        "c": job(
            {"env": {"STATUS": STATUS}, "run": 'echo "$STATUS" >> "$GITHUB_STEP_SUMMARY"'},
            needs=["a", "b"],
        )
        | {"if": "always()"},
    }
    wf = run(tmp_path, origin, jobs)
    assert [wf.results[n].result for n in "abc"] == ["failure", "skipped", "success"]
    assert wf.results["a"].summary == "cleanup\n"
    assert wf.results["c"].summary == "failure\n"


def test_each_job_gets_only_the_artifacts_uploaded_before_it(tmp_path, origin):
    jobs = {
        "up": job(
            {"uses": CHECKOUT},
            {
                "run": "mkdir -p build/release build/k8s && echo b > build/release/x.bento"
                " && echo m > build/k8s/m.yaml"
            },
            {"uses": UPLOAD, "with": {"name": "rel", "path": "build/release/\nbuild/k8s/"}},
        ),
        "down": job(
            {"uses": CHECKOUT},
            {"run": "test ! -e build"},
            {"uses": DOWNLOAD, "with": {"name": "rel", "path": "build"}},
            {"run": "test -f build/release/x.bento && test -f build/k8s/m.yaml"},
            {"uses": DOWNLOAD, "with": {"name": "missing", "path": "build"}},
            needs="up",
        ),
    }
    wf = run(tmp_path, origin, jobs)
    assert wf.results["up"].result == "success"
    assert wf.results["down"].result == "failure"
    assert "Artifact not found for name: missing" in wf.results["down"].log


def test_the_stand_in_gh_verifies_an_attested_file_and_refuses_a_changed_one(
    tmp_path, origin, monkeypatch, capsys
):
    jobs = {
        "a": job(
            {"uses": CHECKOUT},
            {"run": "echo release > r.bento"},
            {"uses": ATTEST, "with": {"subject-path": "r.bento"}},
        )
    }
    wf = run(tmp_path, origin, jobs)
    monkeypatch.setenv("GH_STANDIN_STATE", str(tmp_path / "github"))
    release = wf.results["a"].workspace / "r.bento"
    verify = ["attestation", "verify", str(release), "--repo", "bentogate/bentogate"]
    workflow = ["--signer-workflow", "bentogate/bentogate/.github/workflows/wf.yml"]
    assert gh.main([*verify, *workflow]) == 0
    assert gh.main([*verify, "--signer-workflow", "bentogate/bentogate/.github/x.yml"]) == 1
    release.write_text("tampered\n")
    assert gh.main([*verify, *workflow]) == 1
    assert "no attestations found" in capsys.readouterr().err


def test_the_stand_in_gh_refuses_a_call_it_does_not_serve(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GH_STANDIN_STATE", str(tmp_path))
    assert gh.main(["release", "list"]) == 2
    assert "not served: gh release list" in capsys.readouterr().err


def test_output_files_parse_key_value_and_heredocs():
    text = "a=1\nb<<X\nx=y\nz\nX\nc=\n"
    assert parse_outputs(text) == {"a": "1", "b": "x=y\nz", "c": ""}


@pytest.mark.parametrize(("defaults", "result"), [(None, "success"), ("bash", "failure")])
def test_a_failure_inside_a_pipe_counts_only_under_shell_bash_as_on_github(
    tmp_path, origin, defaults, result
):
    workflow = tmp_path / "wf.yml"
    spec: dict = {"name": "t", "jobs": {"a": job({"run": "false | tee /dev/null"})}}
    if defaults:
        spec["defaults"] = {"run": {"shell": defaults}}
    workflow.write_text(yaml.safe_dump(spec))
    wf = WorkflowRun(workflow, origin, tmp_path / "github", tmp_path / "venv")
    assert wf.execute()["a"].result == result


def test_every_workflow_runs_its_steps_with_pipefail():
    workflows = sorted((Path(__file__).parents[2] / ".github" / "workflows").glob("*.yml"))
    assert {p.name for p in workflows} >= {"ci.yml", "deliver.yml", "monitor.yml"}
    for path in workflows:
        spec = yaml.safe_load(path.read_text())
        assert spec.get("defaults", {}).get("run", {}).get("shell") == "bash", path


def test_a_step_condition_compares_a_variable_both_ways_and_an_unset_one_is_empty(tmp_path, origin):
    steps = (
        {"if": "vars.STRATEGY != ''", "run": "false"},
        {"if": "vars.STRATEGY == ''", "run": 'echo ran >> "$GITHUB_STEP_SUMMARY"'},
    )
    wf = run(tmp_path, origin, {"a": job(*steps)})
    assert (wf.results["a"].result, wf.results["a"].summary) == ("success", "ran\n")

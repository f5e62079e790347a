"""`make pipeline` resumes where it stopped: a failed load test is run again without retraining or
rebuilding.

Each step is recorded in <work_dir>/<model>/pipeline.json (.bentogate/run/sales/pipeline.json) with
its status, the digests of its inputs and its output: the candidate model's tag (train), the
Bento's (build). On the next run, `train`, `build` and `loadtest` are skipped, saying why, when they
are recorded done with the same inputs and their output is still there; the approval and the
deploys always run. A run that reached its end is not resumed: the next one starts afresh, and
FRESH=1 forces that.

  train     the candidate is still in the store and still the last registered one; same code
            (core/, models/*.py, the model's package, training/, the lock), config (its
            `loadtest:` and `deploy:` sections aside: they are read by later steps), data file,
            and production model (the ratchet measured against it)
  build     the Bento is still in the store and still the last build; same candidate, same files
            in the Bento (bentofile.yaml's include list) and dependencies
  loadtest  it passed on this Bento; same gate code and config, THRESHOLDS, WORKERS, and
            production model (the comparison ran against it); its report is still there

Usage (the Makefile's pipeline target): `python -m deploy.resume start [--fresh]`, then
`python -m deploy.resume step NAME -- COMMAND...` per step, `python -m deploy.resume finish`.
A step's exit code is its command's.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from core import cli
from core.settings import ROOT, Settings, get_settings

SKIPPABLE = ("train", "build", "loadtest")
TRAIN_CODE = ("core/*.py", "models/*.py", "models/{model}/**/*", "training/*.py", "uv.lock")
DEPENDENCIES = ("pyproject.toml", "uv.lock")
LOADTEST_CODE = ("loadtests/*.py", "loadtests/config.yaml")
LATER_STEPS_READ = (
    "loadtest",
    "deploy",
)  # model config sections neither training nor the Bento use


@dataclass(frozen=True)
class Decision:
    skip: bool
    reason: str


def decide(
    recorded: dict[str, Any] | None, inputs: dict[str, str] | None, output_problem: str | None
) -> Decision:
    """Pure: skip a step recorded done with the same inputs whose output is still in place."""
    if recorded is None or inputs is None:
        return Decision(False, "no record of it")
    if (status := recorded.get("status")) != "done":
        said = "failed" if status == "failed" else "did not finish"
        return Decision(False, f"it {said} last time")
    before = recorded.get("inputs", {})
    changed = sorted(k for k in inputs.keys() | before.keys() if inputs.get(k) != before.get(k))
    if changed:
        return Decision(False, f"changed since it ran: {', '.join(changed)}")
    if output_problem:
        return Decision(False, output_problem)
    return Decision(True, "same inputs, output in place")


# ---- inputs ---------------------------------------------------------------------------------


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def config_digest(path: Path) -> str:
    """A model config's digest without the sections only later steps read; an unreadable file is
    hashed by its bytes (training reports it, naming the line), a missing one is "missing"."""
    try:
        raw = path.read_bytes()
    except OSError:
        return "missing"
    try:
        data = yaml.safe_load(raw)
    except yaml.YAMLError:
        return _sha(raw)
    if isinstance(data, dict):
        data = {k: v for k, v in data.items() if k not in LATER_STEPS_READ}
    return _sha(json.dumps(data, sort_keys=True, default=str).encode())


def files_digest(root: Path, patterns: Iterable[str]) -> str:
    """One digest of the files under `root` matching `patterns` (glob), by path and content;
    caches (__pycache__, .pyc) and hidden files are not inputs. A model package's config.yaml
    counts as `config_digest` says."""
    files = {
        p
        for pattern in patterns
        for p in root.glob(pattern)
        if p.is_file()
        and "__pycache__" not in p.parts
        and p.suffix != ".pyc"
        and not any(part.startswith(".") for part in p.relative_to(root).parts)
    }
    h = hashlib.sha256()
    for p in sorted(files):
        rel = p.relative_to(root).as_posix()
        is_config = p.name == "config.yaml" and rel.startswith("models/")
        content = config_digest(p) if is_config else _sha(p.read_bytes())
        h.update(f"{rel}\0{content}\n".encode())
    return h.hexdigest()


def _production(model: str) -> str:
    from core import registry  # imports bentoml: only where a step is checked

    prod = registry.production(model)
    return str(prod.tag) if prod is not None else "none"


def _model_config(settings: Settings) -> Path:
    return settings.config or ROOT / "models" / settings.model / "config.yaml"


def _data(settings: Settings, config: Path) -> str:
    """The data source, by content when it is a file here (a changed file retrains)."""
    source = settings.data_source
    if source is None:
        try:
            source = str((yaml.safe_load(config.read_text()) or {}).get("data", {}).get("source"))
        except (OSError, yaml.YAMLError, AttributeError):
            source = "unknown"
    path = Path(source) if Path(source).is_absolute() else ROOT / source
    if source != "default" and path.is_file():
        h = hashlib.sha256()
        with path.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        return h.hexdigest()
    return source


def train_inputs(settings: Settings, steps: dict[str, Any]) -> dict[str, str] | None:
    config = _model_config(settings)
    code = [p.format(model=settings.model) for p in TRAIN_CODE]
    return {
        "code": files_digest(ROOT, code),
        "config": config_digest(config),
        "data": _data(settings, config),
        "production": _production(settings.model),
    }


def build_inputs(settings: Settings, steps: dict[str, Any]) -> dict[str, str] | None:
    candidate = steps.get("train", {}).get("candidate")
    if candidate is None:
        return None
    spec = yaml.safe_load((ROOT / "bentofile.yaml").read_text()) or {}
    return {
        "candidate": candidate,
        "code": files_digest(ROOT, ["bentofile.yaml", *spec.get("include", [])]),
        "dependencies": files_digest(ROOT, DEPENDENCIES),
    }


def loadtest_inputs(settings: Settings, steps: dict[str, Any]) -> dict[str, str] | None:
    bento = steps.get("build", {}).get("bento")
    if bento is None:
        return None
    try:
        own = (yaml.safe_load(_model_config(settings).read_text()) or {}).get("loadtest")
    except (OSError, yaml.YAMLError, AttributeError):
        own = "unreadable"
    return {
        "bento": bento,
        "code": files_digest(ROOT, LOADTEST_CODE),
        "model_loadtest": _sha(json.dumps(own, sort_keys=True, default=str).encode()),
        "thresholds": os.environ.get("THRESHOLDS", ""),
        "workers": os.environ.get("WORKERS", ""),
        "production": _production(settings.model),
    }


# ---- outputs --------------------------------------------------------------------------------


def _registered(settings: Settings) -> str | None:
    path = settings.work_dir / settings.model / "current" / "registered.json"
    try:
        return str(json.loads(path.read_text())["tag"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _last_build() -> str | None:
    from serving.runtime import last_build

    return last_build()


def train_output(settings: Settings) -> dict[str, str]:
    tag = _registered(settings)
    return {"candidate": tag} if tag else {}


def build_output(settings: Settings) -> dict[str, str]:
    tag = _last_build()
    return {"bento": tag} if tag else {}


def _still_last(
    tag: str, lookup: Any, last: str | None, what: str, where: str, as_last: str
) -> str | None:
    """Why the recorded output `tag` can no longer be used: gone from its store (`lookup` fails)
    or no longer the last one made (`last`); None when it still can."""
    import bentoml

    try:
        lookup(tag)
    except (bentoml.exceptions.BentoMLException, ValueError):
        return f"{what} {tag} is no longer in the {where}"
    if last != tag:
        return f"the last {as_last} is now {last}, not {tag}"
    return None


def train_problem(settings: Settings, recorded: dict[str, Any]) -> str | None:
    import bentoml

    tag = str(recorded.get("candidate"))
    return _still_last(
        tag, bentoml.models.get, _registered(settings), "candidate", "model store",
        "registered candidate",
    )  # fmt: skip


def build_problem(settings: Settings, recorded: dict[str, Any]) -> str | None:
    import bentoml

    tag = str(recorded.get("bento"))
    return _still_last(tag, bentoml.bentos.get, _last_build(), "Bento", "store", "build")


def loadtest_problem(settings: Settings, recorded: dict[str, Any]) -> str | None:
    bento = recorded.get("inputs", {}).get("bento")
    try:
        report = json.loads((settings.reports_dir / "loadtest" / "summary.json").read_text())
    except (OSError, ValueError):
        report = {}
    if not isinstance(report, dict) or report.get("targets", {}).get("candidate") != bento:
        return f"reports/loadtest/ no longer holds {bento}'s report"
    if not report.get("accepted"):
        return f"the report in reports/loadtest/ is a failed one of {bento}"
    return None


Inputs = Callable[[Settings, dict[str, Any]], dict[str, str] | None]
STEPS: dict[str, tuple[Inputs, Callable[[Settings, dict[str, Any]], str | None], str]] = {
    "train": (
        train_inputs,
        train_problem,
        "candidate {candidate} is still in the store and still the last registered; "
        "same code, config, data and production model",
    ),
    "build": (
        build_inputs,
        build_problem,
        "Bento {bento} of {inputs[candidate]} is still in the store and still the last build; "
        "same files and dependencies",
    ),
    "loadtest": (
        loadtest_inputs,
        loadtest_problem,
        "{inputs[bento]} passed it with the same gate, thresholds and production model",
    ),
}
OUTPUTS: dict[str, Callable[[Settings], dict[str, str]]] = {
    "train": train_output,
    "build": build_output,
}


# ---- the record -----------------------------------------------------------------------------


def record_path(settings: Settings) -> Path:
    return settings.work_dir / settings.model / "pipeline.json"


def read(path: Path) -> dict[str, Any] | None:
    """The record, or None when there is none or it cannot be read (then every step runs)."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        print(f"[pipeline] {path} is unreadable: every step runs")
        return None
    return data if isinstance(data, dict) and isinstance(data.get("steps"), dict) else None


def write(path: Path, record: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(record, indent=2) + "\n")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def start(path: Path, model: str, fresh: bool) -> None:
    """Begin a run: resume the record of one that stopped, else start an empty one."""
    record = read(path)
    steps: dict[str, Any] = {}
    if fresh:
        print("[pipeline] FRESH=1: every step runs")
    elif record is not None and not record.get("complete") and record.get("model") == model:
        steps = record["steps"]
        print(
            f"[pipeline] resuming: the last run stopped at {record.get('reached')} ({path}); "
            "FRESH=1 runs every step"
        )
    write(path, {"model": model, "started": time.time(), "reached": None, "steps": steps})


def dry_run(makeflags: str) -> bool:
    """Pure: `make -n` (MAKEFLAGS' first word holds the one-letter flags): make still runs a line
    naming $(MAKE), so the step's command runs, to print its own, and nothing is recorded."""
    first = makeflags.split(" ", 1)[0]
    return not first.startswith("-") and "n" in first


def step(path: Path, name: str, command: list[str], settings: Settings) -> int:
    """Run one step's command, or skip it (saying why); record what happened. Its exit code."""
    if dry_run(os.environ.get("MAKEFLAGS", "")):
        return subprocess.call(command)
    record = read(path) or {"model": settings.model, "steps": {}}
    steps: dict[str, Any] = record["steps"]
    record["reached"] = name
    inputs = None
    if name in STEPS:
        compute, problem, said = STEPS[name]
        inputs = compute(settings, steps)
        recorded = steps.get(name)
        # Only a step recorded done has an output to look up (a failed train has no candidate).
        output = None
        if recorded is not None and recorded.get("status") == "done" and inputs is not None:
            output = problem(settings, recorded)
        decision = decide(recorded, inputs, output)
        if decision.skip and recorded is not None:
            print(f"[pipeline] {name}: skipped: {said.format(**recorded)}", flush=True)
            write(path, record)
            return 0
        if recorded is not None:
            print(f"[pipeline] {name}: runs again: {decision.reason}", flush=True)
    steps[name] = {"status": "running", "inputs": inputs}
    write(path, record)
    t0 = time.monotonic()
    try:
        code = subprocess.call(command)
    except KeyboardInterrupt:
        code = 130
    ms = round((time.monotonic() - t0) * 1000)
    steps[name] = {"status": "done" if code == 0 else "failed", "exit": code, "inputs": inputs}
    steps[name]["ms"] = ms
    if code == 0:
        steps[name].update(OUTPUTS.get(name, lambda s: {})(settings))
        print(f"[pipeline] {name}: {ms} ms")
    else:
        print(f"[pipeline] {name}: failed after {ms} ms; `make pipeline` resumes here")
    write(path, record)
    return code


def finish(path: Path) -> None:
    record = read(path) or {"steps": {}}
    write(path, {**record, "complete": True})


@cli.refuses_bad_settings
def main(argv: list[str] | None = None) -> int:
    p = cli.ArgumentParser(prog="python -m deploy.resume", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    begin = sub.add_parser("start", help="begin a pipeline run: resume a stopped one")
    begin.add_argument("--fresh", action="store_true", help="forget the record: every step runs")
    one = sub.add_parser("step", help="run one step, or skip it when its output is still valid")
    one.add_argument("name", help="the step's name in the record")
    one.add_argument("cmd", nargs=argparse.REMAINDER, help="-- the step's command")
    sub.add_parser("finish", help="mark the run complete: the next one starts afresh")
    args = p.parse_args(argv)
    settings = get_settings()
    path = record_path(settings)
    if args.command == "start":
        start(path, settings.model, args.fresh)
        return 0
    if args.command == "finish":
        finish(path)
        return 0
    command = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not command:
        p.error("step: give the step's command after --")
    return step(path, args.name, command, settings)


if __name__ == "__main__":
    sys.exit(main())

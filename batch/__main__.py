"""Batch scoring on Spark: `python -m batch score|submit|status` (the Makefile's score targets).

Exit codes as the other steps: 0 done; 1 the job failed (e.g. no runtime of the model is ready);
2 invalid input (the message names DATA, OUT, KEY, the column or the model); 3 a bug (traceback).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import traceback
from pathlib import Path

from batch import jobs
from batch.job import Request, UsageError, run
from batch.spark import RuntimeNotReady
from core import cli
from core.settings import ROOT, Settings, get_settings
from deploy import notify

EXIT_FAILED, EXIT_USAGE, EXIT_BUG = 1, 2, 3


def _notify(settings: Settings, job_id: str, state: str, what: str) -> None:
    """Slack, as the delivery pipeline does, when a webhook is configured; never fails a job."""
    icon = notify.ICONS["success" if state == "succeeded" else "failure"]
    text = f"{icon} bentogate batch job {job_id} {state}: {what}"
    if settings.slack_webhook_url is None:
        print(f"no Slack webhook configured (SLACK_WEBHOOK_URL); would send: {text}")
        return
    try:
        notify.slack(settings.slack_webhook_url.get_secret_value(), text)
    except notify.NotifyError as exc:
        print(f"warning: the notification was not sent: {exc}", file=sys.stderr)


def cmd_score(args: argparse.Namespace, settings: Settings) -> int:
    store = jobs.Store(settings.batch_dir)
    job_id = args.job or jobs.new_id()
    if args.job is None:
        store.create(
            job_id, data=str(args.data), out=str(args.out), pid=os.getpid(), state="running"
        )
    else:
        store.update(job_id, state="running", pid=os.getpid())
    request = Request(job_id, Path(args.data), Path(args.out), args.master, args.key)
    print(f"job {job_id}: scoring {args.data} into {args.out} on {args.master}", flush=True)
    try:
        manifest = run(request, settings)
    except BaseException as exc:
        code = (
            EXIT_USAGE
            if isinstance(exc, UsageError)
            else EXIT_FAILED
            if isinstance(exc, RuntimeNotReady)
            else EXIT_BUG
        )
        why = str(exc) if code != EXIT_BUG else f"{type(exc).__name__}: {exc}"
        store.update(job_id, state="failed", message=why[:2000])
        _notify(settings, job_id, "failed", f"{args.data}: {why[:300]}")
        if code == EXIT_BUG:
            traceback.print_exc()
            print("error: unexpected failure (a bug): see the traceback above", file=sys.stderr)
        else:
            print(f"error: {exc}", file=sys.stderr)
        if not isinstance(exc, Exception):
            raise
        return code
    rows = manifest["rows"]
    store.update(job_id, state="succeeded", model=manifest["model"], rows=rows, message=None)
    summary = (
        f"{rows['scored']} of {rows['in']} rows scored, {rows['rejected']} rejected, "
        f"by {manifest['model']} ({manifest['runtime']}) into {args.out}"
    )
    _notify(settings, job_id, "succeeded", summary)
    print(f"job {job_id}: {summary} in {manifest['timings']['total_s']:.1f}s")
    return 0


def cmd_submit(args: argparse.Namespace, settings: Settings) -> int:
    """Start `score` in the background, detached from this shell; print the job's id."""
    store = jobs.Store(settings.batch_dir)
    job_id = jobs.new_id()
    log = store.log_path(job_id)
    log.parent.mkdir(parents=True, exist_ok=True)
    store.create(job_id, data=str(args.data), out=str(args.out), pid=None, state="submitted")
    command = [sys.executable, "-m", "batch", "score", "--data", str(args.data)]
    command += ["--out", str(args.out), "--master", args.master, "--job", job_id]
    command += ["--key", args.key] if args.key else []
    with log.open("ab") as out:
        proc = subprocess.Popen(
            command,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # survives the shell (and make) that submitted it
        )
    store.update(job_id, pid=proc.pid)
    print(job_id)
    return 0


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    found = jobs.Store(settings.batch_dir).jobs(args.job)
    if args.job and not found:
        print(f"error: JOB={args.job}: no such job", file=sys.stderr)
        return EXIT_USAGE
    if not found:
        print("no batch jobs yet: `make score-submit DATA=... OUT=...` starts one")
    for job in found:
        rows = job.rows or {}
        counts = f" {rows['scored']}/{rows['in']} scored" if rows else ""
        print(f"{job.id}  {job.state:<9} {job.updated}  {job.data} -> {job.out}{counts}")
        if args.job:
            print(f"  model: {job.model or '-'}\n  pid: {job.pid}\n  log: {job.log}")
        if job.message:
            print(f"  {job.message}")
    return 0


def parser() -> argparse.ArgumentParser:
    p = cli.ArgumentParser(prog="python -m batch", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True, metavar="command")
    for name, text in (("score", "score a file now"), ("submit", "score a file in the background")):
        s = sub.add_parser(name, help=text)
        s.add_argument("--data", required=True, help="a CSV or Parquet file, or a folder of them")
        s.add_argument("--out", required=True, help="the job's folder (must not exist)")
        s.add_argument("--master", default="local[*]", help="Spark master URL")
        s.add_argument("--key", help="input column to use as the row id (default: row number)")
        if name == "score":
            s.add_argument("--job", help=argparse.SUPPRESS)  # a submitted job's id
    st = sub.add_parser("status", help="list jobs, or show one")
    st.add_argument("job", nargs="?")
    return p


COMMANDS = {"score": cmd_score, "submit": cmd_submit, "status": cmd_status}


@cli.refuses_bad_settings
def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return COMMANDS[args.command](args, get_settings())


if __name__ == "__main__":
    sys.exit(main())

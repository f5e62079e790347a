"""The canary's accuracy check: the model's gate metric on predictions joined to their actuals,
canary vs stable, over each analysis interval (deploy/config.yaml `canary.checks.accuracy`).

It reads the environment's prediction log and actuals log (the files the releases write,
`predictions.jsonl` and `actuals.jsonl` in the local target's state directory, the same ones the
monitor ingests) from where they ended when the check was made: each call takes the lines
appended since the previous call, so each analysis sees its own interval. A prediction is the
release's that answered it (`release`: a request the canary was late for and stable answered is
stable's). Join key as in monitoring/store.py: the request id, or `<request id>#<i>` for record
i of a multi-record request. The metrics and their checks are monitoring.quality's, the monitor's
own: the canary's live metrics against its gate's bounds, and the ratchet: not worse than the
stable release by more than the gate's tolerance. Fewer than `min_joined` joined rows for either
release: inconclusive (the step holds; never a pass on no data).
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

import pandas as pd

from core import registry
from core.thresholds import Threshold
from deploy.canary import FAIL, INCONCLUSIVE, PASS, AccuracyChecks, CheckInput, CheckResult
from models import get_spec
from models.actuals import ActualRule, of_record
from models.actuals import rule as actual_rule
from models.config import package_config
from models.contract import ModelSpec
from monitoring import quality

PREDICTIONS, ACTUALS = "predictions.jsonl", "actuals.jsonl"
NAME = "accuracy"


class Tail:
    """The complete JSON lines appended to a log since the last read (or since it was made),
    following one rotation (`name` renamed to `name.1`, a new `name` begun)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rotated = path.with_name(path.name + ".1")
        st = self._stat(path)
        self.inode = self._id(st)
        self.offset = st.st_size if st else 0
        self.rotated_before = self._id(self._stat(self.rotated))  # already there: not ours

    @staticmethod
    def _id(st: os.stat_result | None) -> tuple[int, int] | None:
        return (st.st_dev, st.st_ino) if st else None

    @staticmethod
    def _stat(path: Path) -> os.stat_result | None:
        try:
            return os.stat(path)
        except FileNotFoundError:
            return None

    @staticmethod
    def _lines(path: Path, offset: int) -> tuple[list[dict[str, Any]], int]:
        """Records after `offset` up to the last newline, and the offset after it."""
        try:
            with open(path, "rb") as fh:
                fh.seek(offset)
                data = fh.read()
        except FileNotFoundError:
            return [], offset
        end = data.rfind(b"\n") + 1
        out = []
        for line in data[:end].splitlines():
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                if isinstance(record, dict):
                    out.append(record)
        return out, offset + end

    def read(self) -> list[dict[str, Any]]:
        st = self._stat(self.path)
        if st is None:
            return []
        records: list[dict[str, Any]] = []
        if self._id(st) != self.inode:  # rotated since: the rest of the file it was
            old = self._id(self._stat(self.rotated))
            if old is not None and old == self.inode:
                records, _ = self._lines(self.rotated, self.offset)
            elif old is not None and self.inode is None and old != self.rotated_before:
                records, _ = self._lines(self.rotated, 0)  # begun and rotated since
            self.offset = 0
        elif st.st_size < self.offset:  # truncated in place
            self.offset = 0
        self.inode = self._id(st)
        more, self.offset = self._lines(self.path, self.offset)
        return records + more


def predictions(
    records: list[dict[str, Any]],
) -> dict[str, tuple[str, dict[str, Any], Any, Any]]:
    """key -> (release that answered, input record, prediction, a classifier's {class: p} or
    None) of prediction log records."""
    out: dict[str, tuple[str, dict[str, Any], Any, Any]] = {}
    for r in records:
        if r.get("event") != "prediction" or not r.get("request_id") or not r.get("release"):
            continue
        inputs = r.get("inputs") or []
        outputs = r.get("outputs") or {}
        preds = outputs.get("predictions") if isinstance(outputs, dict) else None
        if not isinstance(inputs, list) or not isinstance(preds, list):
            continue
        probs = outputs.get("probabilities")
        if not isinstance(probs, list) or len(probs) != len(preds):
            probs = [None] * len(preds)
        for i, (x, y, p) in enumerate(zip(inputs, preds, probs, strict=False)):
            key = str(r["request_id"]) if len(inputs) == 1 else f"{r['request_id']}#{i}"
            out[key] = (str(r["release"]), x, y, p)
    return out


def actuals(records: list[dict[str, Any]], rule: ActualRule) -> dict[str, Any]:
    """key -> actual (the last one received wins, as in the monitor). One that is no actual of
    the model (`rule`: a string or NaN for a regressor, logged by a release from before /feedback
    checked them) is skipped, as the monitor skips it: junk must not cost the canary its verdict."""
    return {
        str(r["request_id"]): r["actual"]
        for r in records
        if r.get("event", "actual") == "actual"
        and r.get("request_id")
        and r.get("actual") is not None
        and rule.problem(r["actual"]) is None
    }


def of_classes(actual: Any, proba: Any) -> bool:
    """A classifier's actual is one of the classes it logged probabilities for; a label that is
    not (logged before /feedback checked them) is skipped, as the monitor skips it (a third
    class of two junk labels in 40 cost macro F1 0.3). Without logged probabilities: any."""
    return not isinstance(proba, dict) or str(actual) in proba


class AccuracyCheck:
    """A canary check `(CheckInput) -> CheckResult` over the logs in `log_dir`."""

    def __init__(
        self,
        log_dir: Path,
        spec: ModelSpec,
        thresholds: list[Threshold],
        ratchet: tuple[str, float] | None,
        cfg: AccuracyChecks,
        rule: ActualRule | None = None,
    ) -> None:
        self.spec, self.thresholds, self.ratchet, self.cfg = spec, thresholds, ratchet, cfg
        self.predictions = Tail(log_dir / PREDICTIONS)
        self.actuals = Tail(log_dir / ACTUALS)
        # The canary model's own rule (its classes, its regressor bound), else the task's.
        self.rule = rule or actual_rule(spec.task)

    def joined(self) -> dict[str, tuple[int, dict[str, float]]]:
        """release -> (joined rows, live metrics) over what was logged since the last call."""
        preds = predictions(self.predictions.read())
        truth = actuals(self.actuals.read(), self.rule)
        rows: dict[str, list[tuple[dict[str, Any], Any, Any, Any]]] = {}
        for key, (release, x, y, proba) in preds.items():
            if key in truth and of_classes(truth[key], proba):
                rows.setdefault(release, []).append((x, truth[key], y, proba))
        out = {}
        for release, joined in rows.items():
            inputs = pd.DataFrame.from_records([x for x, _, _, _ in joined])
            metrics = quality.live_metrics(  # a regressor's probabilities (None) go unread
                self.spec,
                inputs,
                [a for _, a, _, _ in joined],
                [y for _, _, y, _ in joined],
                [p for _, _, _, p in joined],
            )
            out[release] = (len(joined), metrics)
        return out

    def __call__(self, i: CheckInput) -> CheckResult:
        try:
            live = self.joined()
        except (ValueError, TypeError, KeyError) as exc:  # actuals of another shape: no verdict
            return CheckResult(NAME, INCONCLUSIVE, f"joined rows not measurable: {exc}")
        c_rows, c_metrics = live.get(i.canary.release, (0, {}))
        s_rows, s_metrics = live.get(i.stable.release, (0, {}))
        n = self.cfg.min_joined
        if min(c_rows, s_rows) < n:
            return CheckResult(
                NAME,
                INCONCLUSIVE,
                f"too few joined actuals ({i.canary.release} {c_rows}, {i.stable.release}"
                f" {s_rows}; {n} each are needed)",
            )
        findings = (
            quality.check_bounds(c_metrics, c_rows, self.thresholds, n)
            if self.cfg.gate_bounds
            else []
        )
        if self.ratchet is not None:
            metric, tolerance = self.ratchet
            findings.append(
                quality.check_ratchet(
                    metric,
                    tolerance,
                    (i.canary.release, c_rows, c_metrics),
                    (i.stable.release, s_rows, s_metrics),
                    n,
                )
            )
        if not findings:
            return CheckResult(NAME, INCONCLUSIVE, "no gate metric to judge the canary by")
        statuses = {f.status for f in findings}
        verdict = (
            FAIL if "fail" in statuses else INCONCLUSIVE if "inconclusive" in statuses else PASS
        )
        shown = [f for f in findings if f.status == verdict] or findings
        return CheckResult(NAME, verdict, "; ".join(f.message for f in shown))


def for_model(log_dir: Path, model_tag: str, cfg: AccuracyChecks) -> AccuracyCheck:
    """The check for the canary `model_tag` with its gate's thresholds and ratchet
    (models/<name>/config.yaml) and the actuals its record admits; `cfg.ratchet_tolerance`
    replaces the gate's tolerance when set."""
    model, _, version = model_tag.partition(":")
    rule: ActualRule | None = None  # no version named, or not in this store: the task's rule
    if version:
        with contextlib.suppress(registry.RegistryError):
            rule = of_record(registry.metadata(registry.get(model_tag)))
    model_cfg = package_config(model)
    thresholds = model_cfg.gate.parsed() if model_cfg is not None else []
    gate_ratchet = model_cfg.gate.ratchet if model_cfg is not None else None
    ratchet = None
    if gate_ratchet is not None:
        tolerance = cfg.ratchet_tolerance
        ratchet = (gate_ratchet.metric, gate_ratchet.tolerance if tolerance is None else tolerance)
    return AccuracyCheck(log_dir, get_spec(model), thresholds, ratchet, cfg, rule)

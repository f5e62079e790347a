"""One monitoring run over the store: for each model version that served in the window, its
serving figures, live quality on joined actuals (per version and per day), drift against its
training reference, and the checks of monitoring/config.yaml on the live version.

A version is a release (`r0003`) when the log names it, else the model tag. The live version is
the environment's stable release (its routing file), else the one that served last. Only the live
version's checks decide the verdict: a version already rolled back is shown, never acted on again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from core import registry
from core.registry import REFERENCE_FILE
from models import actuals, get_spec
from models.actuals import ActualRule
from models.config import package_config
from models.contract import FeatureSchema, ModelSpec, Task
from monitoring import drift, quality
from monitoring.config import MonitorConfig

HEALTHY, DEGRADED, NO_DATA = "HEALTHY", "DEGRADED", "NO DATA"

# A request id may be logged twice (serving/predlog.py): by the previous release that answered
# for a late stable one (`fallback` true) and by the stable one finishing later, its answer
# discarded. One row per key counts: the answer the client got.
SERVED = """
CREATE OR REPLACE TEMP VIEW served AS
SELECT * FROM predictions WHERE time >= TIMESTAMPTZ '{start}' AND time <= TIMESTAMPTZ '{end}'
QUALIFY row_number() OVER (PARTITION BY key ORDER BY fallback DESC, time) = 1
"""

VERSIONS = """
SELECT coalesce(release, model) AS version, any_value(model) AS model, any_value(release),
       count(*) FILTER (WHERE idx = 0) AS requests, count(*) AS records,
       avg(latency_ms) FILTER (WHERE idx = 0), min(latency_ms) FILTER (WHERE idx = 0),
       max(latency_ms) FILTER (WHERE idx = 0),
       quantile_cont(latency_ms, [0.5, 0.9, 0.99]) FILTER (WHERE idx = 0),
       min(time), max(time)
FROM served GROUP BY 1 ORDER BY min(time)
"""

# Requests meant for a release that another (the previous) answered: the router's fallbacks.
FALLBACKS = """
SELECT routed_to, count(*) FROM served WHERE idx = 0 AND fallback AND routed_to IS NOT NULL
GROUP BY 1
"""

JOINED = """
WITH latest AS (SELECT key, arg_max(actual, received_at) AS actual FROM actuals GROUP BY key)
SELECT coalesce(p.release, p.model) AS version, CAST(p.time AS DATE) AS day, p.input,
       p.prediction, p.proba, a.actual
FROM served p JOIN latest a USING (key)
"""

ERRORS = """
SELECT coalesce(answered_by, routed_to) AS release, count(*) FILTER (WHERE status >= 500),
       count(*)
FROM access WHERE time >= ? AND time <= ? GROUP BY 1
"""

SAMPLE = """
SELECT input, prediction FROM (
    SELECT input, prediction FROM served WHERE coalesce(release, model) = ?
) USING SAMPLE reservoir({n} ROWS) REPEATABLE (42)
"""


@dataclass
class Version:
    version: str
    model: str
    release: str | None
    requests: int
    records: int
    latency_ms: dict[str, float | None]
    fallbacks: int  # requests meant for this release that the previous one answered
    first_seen: str
    last_seen: str
    deployed_at: str | None = None
    live: bool = False
    errors: int | None = None  # 5xx answers at the router (None: no access log read)
    joined: int = 0
    # Joined actuals that are no actual of the model (a string for a regressor, an unknown class,
    # a number past the bound: sent before /feedback checked them): left out of every metric.
    skipped_actuals: int = 0
    skipped_why: str | None = None  # the first one's problem
    metrics: dict[str, float] = field(default_factory=dict)
    unmeasured: dict[str, str] = field(default_factory=dict)  # metric -> why it was left out
    by_day: dict[str, dict[str, Any]] = field(default_factory=dict)
    drift: dict[str, Any] | None = None
    drift_html: str | None = None
    findings: list[quality.Finding] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k != "findings"}
        out["checks"] = [f.to_dict() for f in self.findings]
        return out


@dataclass
class Result:
    environment: str
    model: str
    window: str
    start: str
    end: str
    verdict: str
    reasons: list[str]
    versions: list[Version]
    ingested: dict[str, Any]
    action: str | None = None

    @property
    def live(self) -> Version | None:
        return next((v for v in self.versions if v.live), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "environment": self.environment,
            "model": self.model,
            "window": self.window,
            "start": self.start,
            "end": self.end,
            "verdict": self.verdict,
            "reasons": self.reasons,
            "action": self.action,
            "ingested": self.ingested,
            "versions": [v.to_dict() for v in self.versions],
        }


def _iso(value: Any) -> str:
    return value.astimezone(UTC).isoformat(timespec="seconds") if value is not None else ""


def _records(frame: pd.DataFrame, column: str = "input") -> pd.DataFrame:
    return pd.DataFrame.from_records([json.loads(s) for s in frame[column]], index=frame.index)


def _values(series: pd.Series) -> list[Any]:
    return [json.loads(s) for s in series]


def deploy_state(state_dir: Path) -> tuple[dict[str, dict[str, Any]], str | None]:
    """(release id -> its history entry, the stable release id) of the local target's state
    directory of the environment and model; empty where it has none (another target)."""
    history: list[dict[str, Any]] = []
    stable = None
    with contextlib.suppress(OSError, ValueError):
        history = json.loads((state_dir / "history.json").read_text())
    with contextlib.suppress(OSError, ValueError, AttributeError):
        stable = json.loads((state_dir / "routing.json").read_text()).get("stable")
    return {str(r.get("id")): r for r in history if isinstance(r, dict)}, stable


def _deployed_at(v: Version, history: dict[str, dict[str, Any]]) -> str | None:
    if v.release and v.release in history:
        return str(history[v.release].get("created"))
    for r in history.values():
        if r.get("model_tag") == v.model:
            return str(r.get("created"))
    return None


def _reference(model_tag: str) -> tuple[FeatureSchema, pd.DataFrame] | None:
    try:
        model = registry.get(model_tag)
        registry.verify(model)
    except registry.RegistryError:
        return None
    path = Path(model.path_of(REFERENCE_FILE))
    if not path.is_file():
        return None
    schema = FeatureSchema.model_validate(registry.metadata(model)["feature_schema"])
    return schema, pd.read_parquet(path)


def actual_rule(model_tag: str, task: Task, rows: pd.DataFrame | None = None) -> ActualRule:
    """What an actual of the version's model may be: from its record in the store; a model the
    store does not hold gets its task's rule, and a classifier the classes it logged."""
    try:
        rule = actuals.of_record(registry.metadata(registry.get(model_tag)))
    except registry.RegistryError:
        rule = actuals.rule(task)
    if rule.task == "classification" and rule.classes is None and rows is not None:
        logged = [str(k) for p in rows["proba"] if isinstance(p, dict) for k in p]
        if logged:
            rule = dataclasses.replace(rule, classes=tuple(dict.fromkeys(logged)))
    return rule


def usable(rule: ActualRule, rows: pd.DataFrame) -> tuple[pd.DataFrame, int, str | None]:
    """(the joined rows whose actual is one of the model, how many were not, the first's problem)."""
    problems = [rule.problem(a) for a in rows["actual"]]
    bad = [p for p in problems if p is not None]
    keep = [p is None for p in problems]
    return rows[keep], len(bad), (bad[0] if bad else None)


def versions(con: duckdb.DuckDBPyConnection, start: datetime, end: datetime) -> list[Version]:
    # A view takes no parameters: the bounds are our own datetimes, written as ISO literals.
    con.execute(SERVED.format(start=start.isoformat(), end=end.isoformat()))
    fallbacks = dict(con.execute(FALLBACKS).fetchall())
    out = []
    for row in con.execute(VERSIONS).fetchall():
        (version, model, release, requests, records, avg, lo, hi, q, first, last) = row
        out.append(
            Version(
                version=version,
                model=model,
                release=release,
                requests=int(requests),
                records=int(records),
                latency_ms={
                    "avg": avg,
                    "min": lo,
                    "max": hi,
                    "p50": q[0] if q else None,
                    "p90": q[1] if q else None,
                    "p99": q[2] if q else None,
                },
                fallbacks=int(fallbacks.get(release, 0)) if release else 0,
                first_seen=_iso(first),
                last_seen=_iso(last),
            )
        )
    return out


def run(
    con: duckdb.DuckDBPyConnection,
    *,
    environment: str,
    model: str,
    cfg: MonitorConfig,
    window: str,
    window_s: int,
    now: datetime,
    state_dir: Path,
    out_dir: Path,
    ingested: dict[str, Any],
    drifts: Executor | None = None,
) -> Result:
    """`drifts` runs the drift comparisons (drift.Worker(): a process that imported Evidently
    while the logs were ingested); None: here."""
    end, start = now, now - timedelta(seconds=window_s)
    found = versions(con, start, end)
    history, stable = deploy_state(state_dir)
    for v in found:
        v.deployed_at = _deployed_at(v, history)
    errors: dict[str, int] = {}
    for release, failed, _total in con.execute(ERRORS, [start, end]).fetchall():
        if release:  # a log without releases: the release's model tag is the version
            key = (
                release
                if any(v.release for v in found)
                else history.get(release, {}).get("model_tag")
            )
            if key:
                errors[key] = errors.get(key, 0) + int(failed)
    has_access = bool(con.execute("SELECT count(*) FROM access").fetchone()[0])  # type: ignore[index]
    for v in found:
        v.errors = errors.get(v.version, 0) if has_access else None
    if stable is not None:  # the local target says what serves: only it is judged
        live = next((v for v in found if v.release and v.release == stable), None)
        tag = history.get(stable, {}).get("model_tag")
        if live is None and not any(v.release for v in found):  # a log without releases
            live = next((v for v in found if v.version == tag), None)
    else:  # no routing state here (another target): the version that served last
        live = max(found, key=lambda v: v.last_seen) if found else None
    if live is not None:
        live.live = True

    spec: ModelSpec = get_spec(model)
    model_cfg = package_config(model)
    thresholds = model_cfg.gate.parsed() if model_cfg is not None else []
    ratchet = model_cfg.gate.ratchet if model_cfg is not None else None

    joined = con.execute(JOINED).df()
    if not joined.empty:
        feats = _records(joined)
        joined = pd.concat([joined.drop(columns=["input"]), feats], axis=1)
        joined["actual"] = _values(joined["actual"])
        joined["prediction"] = _values(joined["prediction"])
        joined["proba"] = [json.loads(s) if isinstance(s, str) else None for s in joined["proba"]]
        joined["day"] = joined["day"].astype(str)
    for v in found:
        rows = joined[joined["version"] == v.version] if not joined.empty else joined
        if len(rows):
            rows, v.skipped_actuals, v.skipped_why = usable(
                actual_rule(v.model, spec.task, rows), rows
            )
        v.joined = len(rows)
        if len(rows):
            v.metrics, v.unmeasured = quality.live_quality(
                spec,
                rows,
                rows["actual"].tolist(),
                rows["prediction"].tolist(),
                rows["proba"].tolist(),
            )
            v.by_day = quality.by_group(spec, rows, "day")
        v.findings = (
            quality.check_bounds(
                v.metrics, v.joined, thresholds, cfg.quality.min_rows, v.unmeasured
            )
            if cfg.quality.gate_bounds
            else []
        )

    ordered = sorted(found, key=lambda v: (v.deployed_at or v.first_seen, v.first_seen))
    for i, v in enumerate(ordered):
        if ratchet is None:
            break
        prev = ordered[i - 1] if i > 0 else None
        v.findings.append(
            quality.check_ratchet(
                ratchet.metric,
                ratchet.tolerance,
                (v.version, v.joined, v.metrics),
                (prev.version, prev.joined, prev.metrics) if prev else None,
                cfg.quality.ratchet_min_rows,
                [(x.version, x.unmeasured) for x in (v, prev) if x is not None],
            )
        )

    pending = []
    references: dict[str, tuple[FeatureSchema, pd.DataFrame] | None] = {}
    for v in found:
        if v.model not in references:
            references[v.model] = _reference(v.model)
        ref = references[v.model]
        sample = con.execute(
            SAMPLE.replace("{n}", str(int(cfg.drift.sample_rows))), [v.version]
        ).df()
        if len(sample) < cfg.drift.min_rows:
            # Too few records for the check to judge: no comparison (nor Evidently's ~6 s import
            # for it), the finding says how many there were.
            v.findings.append(
                quality.check_drift(
                    (), 0, len(sample), cfg.drift.max_drifted_share, cfg.drift.min_rows
                )
            )
            continue
        if ref is None:
            v.findings.append(
                quality.Finding(
                    "drift", "inconclusive", None, "", f"no reference saved with {v.model}"
                )
            )
            continue
        schema, reference = ref
        current = _records(sample)
        current["prediction"] = _values(sample["prediction"])
        html = out_dir / f"drift-{v.version.replace(':', '-')}.html" if v.live else None
        args = (
            schema,
            spec.task,
            reference.sample(min(len(reference), cfg.drift.sample_rows), random_state=0),
            current,
            html,
        )
        pending.append(
            (
                v,
                html,
                drifts.submit(drift.compare, *args) if drifts else _done(drift.compare(*args)),
            )
        )
    for v, html, future in pending:
        result = future.result()
        v.drift = result.to_dict()
        v.drift_html = html.name if html is not None and html.exists() else None
        v.findings.append(
            quality.check_drift(
                result.drifted_features,
                len(result.features),
                result.rows,
                cfg.drift.max_drifted_share,
                cfg.drift.min_rows,
            )
        )

    verdict, reasons = judge(live)
    return Result(
        environment=environment,
        model=model,
        window=window,
        start=_iso(start),
        end=_iso(end),
        verdict=verdict,
        reasons=reasons,
        versions=found,
        ingested=ingested,
    )


def _done(result: drift.DriftResult) -> Future[drift.DriftResult]:
    future: Future[drift.DriftResult] = Future()
    future.set_result(result)
    return future


def judge(live: Version | None) -> tuple[str, list[str]]:
    """HEALTHY, DEGRADED (the failed checks of the live version), or NO DATA (the live version
    served nothing in the window, or none of its checks could conclude)."""
    if live is None:
        return NO_DATA, ["the live version served no predictions in the window"]
    failed = [f.message for f in live.findings if f.status == "fail"]
    if failed:
        return DEGRADED, failed
    if not any(f.status == "pass" for f in live.findings):
        return NO_DATA, [f.message for f in live.findings if f.status == "inconclusive"]
    return HEALTHY, [f.message for f in live.findings if f.status == "inconclusive"]

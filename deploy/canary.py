"""Canary analysis: is the canary release as good as the stable one over the last interval?

Pure: access-log records (the router's JSON lines, nginx.py) in, a verdict out. The canary loop
(local.py, `LocalTarget.canary`) reads the lines written since the step began, calls `analyse`
and moves the weight, holds, or rolls back; `make deploy STRATEGY=canary` runs it.

Per release, over the requests the split routed to it (POSTs without x-model-version): requests,
failures (a 5xx from it, or a request it did not answer itself: late, refused or 5xx and the
other release answered) and the P90 of its own upstream time, where a request it did not answer
itself counts at the router's time budget (nginx skips a release marked down and logs only the
other's time; a refused connection logs 0 ms: neither is how fast it answered). Checks (config:
deploy/config.yaml `canary.checks`): error rate at most `error_rate_max`; P90 at most
`p90_ratio_max` x stable's and at most `p90_max_ms`. Each check says pass, fail or inconclusive;
too few requests (below `min_requests`) make every check inconclusive, never a pass, never a
fail, and no ratio is ever computed over zero requests (Argo Rollouts #180, Flagger #1035: NaN
on no data).

More checks plug in as callables `(CheckInput) -> CheckResult` in `extra`, with the same
verdicts: the accuracy check on joined actuals (accuracy.py, `checks.accuracy`) is one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Verdict = Literal["pass", "fail", "inconclusive"]
PASS: Verdict = "pass"
FAIL: Verdict = "fail"
INCONCLUSIVE: Verdict = "inconclusive"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AccuracyChecks(_Strict):
    """`checks.accuracy`: the model's gate metric on joined actuals, canary vs stable
    (accuracy.py). Absent (the default): no actuals are expected during a canary."""

    min_joined: int = Field(default=200, ge=1)  # per release and interval, else inconclusive
    gate_bounds: bool = True  # the canary's live metrics must meet its gate's thresholds
    ratchet_tolerance: float | None = Field(default=None, ge=0)  # None: the gate's ratchet


class Checks(_Strict):
    error_rate_max: float = Field(default=0.01, ge=0, le=1)
    p90_ratio_max: float | None = Field(default=1.5, gt=0)  # canary P90 / stable P90
    p90_max_ms: float | None = Field(default=500, gt=0)
    accuracy: AccuracyChecks | None = None


class CanaryConfig(_Strict):
    """deploy/config.yaml `canary`: how traffic moves to a canary and what it must meet."""

    steps: list[int] = Field(default=[10, 25, 50, 100], min_length=2)
    interval_s: float = Field(default=60, gt=0, le=3600)
    min_requests: int = Field(default=50, ge=1)
    max_failed_checks: int = Field(default=2, ge=1)
    # Inconclusive analyses (too little traffic) in a row before the canary is rolled back.
    max_holds: int = Field(default=10, ge=0)
    # Sticky: requests with the same value of this header go to the same release at a given
    # weight (nginx split_clients); without it (or without the header) the request id decides.
    sticky_header: str | None = Field(default=None, pattern=r"^[A-Za-z0-9-]{1,64}$")
    checks: Checks = Checks()

    @model_validator(mode="after")
    def _steps(self) -> CanaryConfig:
        s = self.steps
        if any(not 0 < w <= 100 for w in s) or s != sorted(set(s)) or s[-1] != 100 or len(s) < 2:
            raise ValueError(
                f"steps {s}: increasing percentages in 1..100, at least one below 100 (analysed"
                " before promotion), ending at 100"
            )
        return self


@dataclass(frozen=True)
class ReleaseStats:
    release: str
    requests: int
    failures: int
    error_rate: float | None  # None: no requests
    p90_ms: float | None  # None: no upstream time measured


@dataclass(frozen=True)
class CheckInput:
    canary: ReleaseStats
    stable: ReleaseStats
    checks: Checks
    min_requests: int


@dataclass(frozen=True)
class CheckResult:
    name: str
    verdict: Verdict
    detail: str


Check = Callable[[CheckInput], CheckResult]


@dataclass(frozen=True)
class Analysis:
    verdict: Verdict
    canary: ReleaseStats
    stable: ReleaseStats
    checks: list[CheckResult] = field(default_factory=list)

    def describe(self) -> str:
        return "; ".join(f"{c.name} {c.verdict}: {c.detail}" for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _first(value: Any) -> str:
    """The routed release's part of nginx's "a, b" (one entry per upstream tried)."""
    return str(value).split(",")[0].split(":")[0].strip()


def _seconds(value: Any) -> float | None:
    try:
        return float(_first(value))
    except ValueError:  # "-": no answer at all
        return None


def p90(values: Sequence[float]) -> float | None:
    """Nearest-rank 90th percentile; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, -(-9 * len(ordered) // 10) - 1)]


def failed(record: dict[str, Any]) -> bool:
    """The release it was routed to did not answer it well itself."""
    first = _first(record.get("upstream_status", ""))
    status = int(record.get("status", 0))
    return (
        status >= 500
        or (first.isdigit() and int(first) >= 500)
        or record.get("answered_by") != record.get("routed_to")
    )


def split_records(records: Iterable[dict[str, Any]]) -> Iterable[dict[str, Any]]:
    """Prediction requests the weights decided: POSTs that named no version."""
    return (r for r in records if r.get("method") == "POST" and not r.get("version"))


def _own_ms(record: dict[str, Any], budget_ms: float) -> float | None:
    """How long the routed release took: its upstream time when it answered itself, else the
    budget (it was late, refused or skipped: the client waited for the other release)."""
    if record.get("answered_by") != record.get("routed_to"):
        return budget_ms
    t = _seconds(record.get("upstream_time", "-"))
    return None if t is None else t * 1000


def stats(records: Iterable[dict[str, Any]], release: str, budget_ms: float) -> ReleaseStats:
    mine = [r for r in split_records(records) if r.get("routed_to") == release]
    failures = sum(failed(r) for r in mine)
    times = [t for r in mine if (t := _own_ms(r, budget_ms)) is not None]
    return ReleaseStats(
        release=release,
        requests=len(mine),
        failures=failures,
        error_rate=failures / len(mine) if mine else None,
        p90_ms=p90(times),
    )


def _enough(i: CheckInput, *who: ReleaseStats) -> str | None:
    short = [f"{s.release} {s.requests}" for s in who if s.requests < i.min_requests]
    return f"too few requests ({', '.join(short)} < {i.min_requests})" if short else None


def error_rate(i: CheckInput) -> CheckResult:
    name, bound = "error_rate", i.checks.error_rate_max
    if why := _enough(i, i.canary):
        return CheckResult(name, INCONCLUSIVE, why)
    rate = i.canary.error_rate or 0.0
    verdict = PASS if rate <= bound else FAIL
    detail = f"{i.canary.failures}/{i.canary.requests} = {rate:.2%} (max {bound:.2%})"
    return CheckResult(name, verdict, detail)


def p90_ratio(i: CheckInput) -> CheckResult:
    name, bound = "p90_ratio", i.checks.p90_ratio_max
    if why := _enough(i, i.canary, i.stable):
        return CheckResult(name, INCONCLUSIVE, why)
    c, s = i.canary.p90_ms, i.stable.p90_ms
    if c is None or s is None or s <= 0 or bound is None:
        return CheckResult(name, INCONCLUSIVE, "no upstream times to compare")
    ratio = c / s
    detail = f"P90 {c:.1f} ms vs stable {s:.1f} ms = {ratio:.2f}x (max {bound:g}x)"
    return CheckResult(name, PASS if ratio <= bound else FAIL, detail)


def p90_max(i: CheckInput) -> CheckResult:
    name, bound = "p90_max", i.checks.p90_max_ms
    if why := _enough(i, i.canary):
        return CheckResult(name, INCONCLUSIVE, why)
    c = i.canary.p90_ms
    if c is None or bound is None:
        return CheckResult(name, INCONCLUSIVE, "no upstream times")
    return CheckResult(name, PASS if c <= bound else FAIL, f"P90 {c:.1f} ms (max {bound:g} ms)")


def builtin_checks(checks: Checks) -> list[Check]:
    out: list[Check] = [error_rate]
    if checks.p90_ratio_max is not None:
        out.append(p90_ratio)
    if checks.p90_max_ms is not None:
        out.append(p90_max)
    return out


def analyse(
    records: Iterable[dict[str, Any]],
    canary: str,
    stable: str,
    cfg: CanaryConfig,
    extra: Sequence[Check] = (),
    *,
    budget_ms: float,
) -> Analysis:
    """Fail if any check fails; else inconclusive if any is; else pass. `budget_ms`: the
    router's time budget (a request a release did not answer itself took at least that)."""
    rows = list(records)
    i = CheckInput(
        stats(rows, canary, budget_ms), stats(rows, stable, budget_ms), cfg.checks, cfg.min_requests
    )
    results = [check(i) for check in [*builtin_checks(cfg.checks), *extra]]
    verdicts = {r.verdict for r in results}
    verdict = FAIL if FAIL in verdicts else INCONCLUSIVE if INCONCLUSIVE in verdicts else PASS
    return Analysis(verdict, i.canary, i.stable, results)


@dataclass
class Step:
    """One analysis of the canary loop, for the step report."""

    weight: int
    analysis: Analysis | None  # None: the promotion, which nothing measured
    action: str  # "advance", "hold", "failed check", "roll back", "promote"


def markdown(canary: str, stable: str, steps: Sequence[Step], outcome: str) -> str:
    """The step report (reports/canary.md), ready for the reviewer's evidence."""
    lines = [
        f"### Canary {canary} vs stable {stable}: {outcome}",
        "",
        "| step | weight | canary req | canary err | canary P90 ms | stable req | stable P90 ms"
        " | verdict | action |",
        "|---|---|---|---|---|---|---|---|---|",
    ]

    def ms(v: float | None) -> str:
        return "-" if v is None else f"{v:.1f}"

    def rate(v: float | None) -> str:
        return "-" if v is None else f"{v:.2%}"

    for n, s in enumerate(steps, 1):
        a = s.analysis
        figures = (
            "- | - | - | - | - | -"
            if a is None
            else f"{a.canary.requests} | {rate(a.canary.error_rate)} | {ms(a.canary.p90_ms)}"
            f" | {a.stable.requests} | {ms(a.stable.p90_ms)} | {a.verdict}"
        )
        lines.append(f"| {n} | {s.weight}% | {figures} | {s.action} |")
    fails = [f"- step {n}: {s.analysis.describe()}" for n, s in enumerate(steps, 1) if s.analysis]
    return "\n".join([*lines, "", *fails]) + "\n"

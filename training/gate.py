"""Gate stage: accept a candidate only if its metrics meet the thresholds and it is not worse
than production (on the same validation data) by more than the configured tolerance."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

from core.thresholds import Threshold
from core.verdict import Check, GateResult
from core.yamlconf import line_of, shown
from models.config import RatchetConfig
from training.evaluate import LOWER_IS_BETTER


def located(thresholds: list[Threshold], config: Path) -> list[Threshold]:
    """The config's gate thresholds, each with the file and line it is set at: a failure then
    says which line to look at (a starter bound, say, or one a PR just changed)."""
    return [
        dataclasses.replace(
            t,
            source=f"{shown(config)}:{line_of(config, ('gate', 'thresholds', t.metric)) or 1}",
        )
        for t in thresholds
    ]


def _threshold_check(metrics: dict[str, float], t: Threshold) -> Check:
    value = metrics.get(t.metric)
    where = f" (set at {t.source})" if t.source else ""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return Check(
            t.metric,
            None,
            t.text,
            False,
            f"{t.metric} was not measured (bound: {t.text}{where})",
        )
    ok = t.holds(value)
    said = f"meets {t.text}" if ok else f"fails {t.text}{where}"
    return Check(t.metric, value, t.text, ok, f"{t.metric} = {value:.4f} {said}")


def _ratchet_check(
    metrics: dict[str, float], production: dict[str, float], r: RatchetConfig
) -> Check:
    cand, prod = metrics.get(r.metric), production.get(r.metric)
    if cand is None or prod is None:
        return Check(
            f"ratchet:{r.metric}",
            cand,
            "vs production",
            False,
            f"ratchet: {r.metric} missing for {'candidate' if cand is None else 'production'}",
        )
    if r.metric in LOWER_IS_BETTER:
        limit, ok = prod + r.tolerance, cand <= prod + r.tolerance
        rel = "<="
    else:
        limit, ok = prod - r.tolerance, cand >= prod - r.tolerance
        rel = ">="
    bound = f"{rel} {limit:.4f} (production {prod:.4f}, tolerance {r.tolerance:g})"
    verdict = "meets" if ok else "is worse than production: fails"
    return Check(
        f"ratchet:{r.metric}",
        cand,
        bound,
        ok,
        f"ratchet: {r.metric} = {cand:.4f} {verdict} {bound}",
    )


def is_accepted(
    metrics: dict[str, float],
    thresholds: list[Threshold],
    production: dict[str, float] | None = None,
    ratchet: RatchetConfig | None = None,
) -> GateResult:
    checks = [_threshold_check(metrics, t) for t in thresholds]
    if production is not None and ratchet is not None:
        checks.append(_ratchet_check(metrics, production, ratchet))
    return GateResult(accepted=all(c.passed for c in checks), checks=tuple(checks))

"""`make shadow-report ENV=...`: the shadow candidate against the stable release on the same
requests. Pure functions over the router's access log (a line per client request), its shadow
log (a line per mirrored copy, same request id, naming the shadow release: one log holds every
shadow's lines, and a report is about one) and the prediction log (one line per prediction
with the request id and the model tag): prediction differences, latency, errors. Markdown.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

BAR = 30


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    out = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue  # a line cut by a crash: not evidence either way
    return out


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _seconds(value: Any) -> float | None:
    """nginx's $upstream_response_time: "0.004", "-", or "0.300, 0.002" (the last answered)."""
    try:
        return float(str(value).split(",")[-1].split(":")[-1].strip())
    except ValueError:
        return None


def mirrored_to(line: dict[str, Any], release: str, port: int) -> bool:
    """The shadow log line is of a copy mirrored to `release` (a line written before lines
    named their shadow: by the port it was sent to)."""
    if "shadow" in line:
        return bool(line["shadow"] == release)
    return str(line.get("upstream_addr", "")).split(",")[-1].strip().endswith(f":{port}")


def compare(
    access: Iterable[dict[str, Any]],
    shadow: Iterable[dict[str, Any]],
    predictions: Iterable[dict[str, Any]],
    stable_tag: str,
    shadow_tag: str,
    shadow_release: str,
    shadow_port: int,
) -> dict[str, Any]:
    """Pure: the stable release's and the shadow release's answers to the same requests."""
    clients: dict[str, dict[str, Any]] = {}
    mirrored: dict[str, dict[str, Any]] = {}
    for line in access:
        if line.get("request_id"):
            clients[line["request_id"]] = line
    for line in shadow:
        if (
            line.get("request_id")
            and line.get("status") != 204  # 204: not in the share
            and mirrored_to(line, shadow_release, shadow_port)
        ):
            mirrored[line["request_id"]] = line
    preds: dict[tuple[str, str], list[Any]] = {}
    for p in predictions:
        outputs = p.get("outputs") or {}
        values = outputs.get("predictions") or outputs.get("labels")
        if p.get("request_id") and values is not None:
            preds[(p["request_id"], p.get("model", ""))] = values
    both = [rid for rid in mirrored if rid in clients]
    shadow_errors = [rid for rid in both if int(mirrored[rid].get("status", 0)) >= 400]
    diffs: list[float] = []
    differing = 0
    for rid in both:
        a, b = preds.get((rid, stable_tag)), preds.get((rid, shadow_tag))
        if a is None or b is None or len(a) != len(b):
            continue
        for x, y in zip(a, b, strict=True):
            if isinstance(x, int | float) and isinstance(y, int | float):
                diffs.append(abs(float(x) - float(y)))
                differing += float(x) != float(y)
            else:
                diffs.append(0.0 if x == y else 1.0)
                differing += x != y
    lat_stable = [t for rid in both if (t := _seconds(clients[rid].get("upstream_time")))]
    lat_shadow = [t for rid in both if (t := _seconds(mirrored[rid].get("upstream_time")))]
    return {
        "stable": stable_tag,
        "shadow": shadow_tag,
        "requests": len(both),
        "compared_predictions": len(diffs),
        "differing_predictions": differing,
        "mean_abs_diff": sum(diffs) / len(diffs) if diffs else None,
        "max_abs_diff": max(diffs) if diffs else None,
        "shadow_errors": len(shadow_errors),
        "latency_ms": {
            name: {q: (v * 1000 if (v := _pct(values, f)) is not None else None) for q, f in qs}
            for name, values in (("stable", lat_stable), ("shadow", lat_shadow))
            for qs in [(("p50", 0.5), ("p90", 0.9), ("p99", 0.99))]
        },
        "diff_histogram": _histogram(diffs),
    }


def _histogram(diffs: list[float], bins: int = 6) -> list[tuple[str, int]]:
    if not diffs:
        return []
    top = max(diffs) or 1.0
    counts = [0] * bins
    for d in diffs:
        counts[min(bins - 1, int(d / top * bins))] += 1
    return [(f"{i * top / bins:.3g}-{(i + 1) * top / bins:.3g}", c) for i, c in enumerate(counts)]


def _fmt(value: float | None, spec: str = ".2f") -> str:
    return "n/a" if value is None else format(value, spec)


def markdown(r: dict[str, Any]) -> str:
    lat = r["latency_ms"]
    lines = [
        f"## Shadow: {r['shadow']} vs stable {r['stable']}",
        "",
        f"{r['requests']} requests seen by both; {r['compared_predictions']} predictions"
        f" compared, {r['differing_predictions']} differ; mean |difference|"
        f" {_fmt(r['mean_abs_diff'], '.4g')}, max {_fmt(r['max_abs_diff'], '.4g')};"
        f" shadow errors {r['shadow_errors']}.",
        "",
        "| latency (upstream, ms) | P50 | P90 | P99 |",
        "|---|---|---|---|",
    ]
    for name in ("stable", "shadow"):
        lines.append(
            f"| {name} | {_fmt(lat[name]['p50'])} | {_fmt(lat[name]['p90'])} |"
            f" {_fmt(lat[name]['p99'])} |"
        )
    if r["diff_histogram"]:
        most = max(c for _, c in r["diff_histogram"]) or 1
        lines += ["", "|difference| of predictions (count):", "", "```"]
        for label, count in r["diff_histogram"]:
            lines.append(f"{label:>16} {'#' * round(count / most * BAR):<{BAR}} {count}")
        lines.append("```")
    if r["stable"] == r["shadow"]:
        lines += [
            "",
            "The shadow serves the same model tag as stable: its predictions are not"
            " told apart from stable's (only latency and errors are compared).",
        ]
    if r["requests"] == 0:
        lines += ["", "No mirrored request yet: nothing to compare (send traffic, then re-run)."]
    return "\n".join(lines) + "\n"

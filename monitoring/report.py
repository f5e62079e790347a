"""The monitor's outputs in reports/monitor/<env>-<model>/: summary.json (everything), summary.md
(for $GITHUB_STEP_SUMMARY: the verdict line first), report.html (one page: verdict on top, then
charts and tables; Evidently's drift report linked), metrics.prom (Prometheus textfile format)."""

from __future__ import annotations

import html
import json
import math
import os
from pathlib import Path
from typing import Any

from monitoring.monitor import DEGRADED, HEALTHY, Result, Version

COLORS = {HEALTHY: "#1a7f37", DEGRADED: "#cf222e", "NO DATA": "#6e7781"}
PALETTE = ["#0969da", "#bf3989", "#1a7f37", "#9a6700", "#8250df", "#cf222e"]


def _atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def verdict_line(r: Result) -> str:
    why = f" ({'; '.join(r.reasons)})" if r.reasons and r.verdict != HEALTHY else ""
    return f"{r.verdict}{why}"


def _num(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _primary(v: Version) -> str | None:
    for name in ("nwrmsle", "accuracy", "rmse", "f1_macro"):
        if name in v.metrics:
            return name
    return next(iter(v.metrics), None)


def markdown(r: Result) -> str:
    lines = [
        f"## Monitor {r.environment}/{r.model}: {verdict_line(r)}",
        "",
        f"Window {r.window}: {r.start} to {r.end}." + (f" Action: {r.action}." if r.action else ""),
        "",
        "| version | live | deployed | requests | records | latency avg / p50 / p90 / p99 / max ms "
        "| errors (5xx) | fallbacks | joined actuals | live metrics | drifted features |",
        "|---|---|---|---:|---:|---|---:|---:|---:|---|---|",
    ]
    for v in r.versions:
        lat = " / ".join(_num(v.latency_ms.get(k), 1) for k in ("avg", "p50", "p90", "p99", "max"))
        metrics = ", ".join(f"{k} {_num(val)}" for k, val in v.metrics.items()) or "-"
        drifted = f"{len(v.drift['drifted_features'])}/{v.drift['features']}" if v.drift else "-"
        lines.append(
            f"| {v.version} ({v.model}) | {'yes' if v.live else ''} | {v.deployed_at or '-'} "
            f"| {v.requests} | {v.records} | {lat} | {_num(v.errors)} | {v.fallbacks} | {v.joined} "
            f"| {metrics} "
            f"| {drifted} |"
        )
    live = r.live
    if live is not None:
        lines += ["", f"Checks of the live version {live.version}:", ""]
        lines += [f"- **{f.status.upper()}** {f.check}: {f.message}" for f in live.findings]
    return "\n".join(lines) + "\n"


def _svg_lines(series: dict[str, list[tuple[str, float]]], title: str, bound: float | None) -> str:
    """A small line chart: x = days (shared), one line per version."""
    days = sorted({d for pts in series.values() for d, _ in pts})
    values = [y for pts in series.values() for _, y in pts if not math.isnan(y)]
    if not days or not values:
        return f"<p class=muted>{html.escape(title)}: no joined actuals yet.</p>"
    if bound is not None:
        values.append(bound)
    lo, hi = min(0.0, min(values)), max(values) * 1.1 or 1.0
    w, h, pad = 640, 220, 40

    def x(d: str) -> float:
        return pad + (w - 2 * pad) * (days.index(d) / max(len(days) - 1, 1))

    def y(v: float) -> float:
        return h - pad - (h - 2 * pad) * ((v - lo) / (hi - lo))

    parts = [f'<svg viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img">']
    parts.append(f'<text x="{pad}" y="16" font-size="13">{html.escape(title)}</text>')
    parts.append(f'<line x1="{pad}" y1="{h - pad}" x2="{w - pad}" y2="{h - pad}" stroke="#999"/>')
    for v in (lo, hi):
        parts.append(f'<text x="2" y="{y(v) + 4:.0f}" font-size="10">{v:.3g}</text>')
    if bound is not None:
        parts.append(
            f'<line x1="{pad}" y1="{y(bound):.1f}" x2="{w - pad}" y2="{y(bound):.1f}" '
            'stroke="#cf222e" stroke-dasharray="4 3"/>'
            f'<text x="{w - pad - 80}" y="{y(bound) - 4:.0f}" font-size="10" fill="#cf222e">'
            f"gate bound {bound:g}</text>"
        )
    for i, d in enumerate(days):
        if len(days) <= 10 or i % max(len(days) // 8, 1) == 0:
            parts.append(f'<text x="{x(d) - 25:.0f}" y="{h - pad + 14}" font-size="10">{d}</text>')
    for i, (name, pts) in enumerate(series.items()):
        color = PALETTE[i % len(PALETTE)]
        coords = " ".join(f"{x(d):.1f},{y(v):.1f}" for d, v in pts if not math.isnan(v))
        parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{coords}"/>')
        for d, v in pts:
            if not math.isnan(v):
                parts.append(f'<circle cx="{x(d):.1f}" cy="{y(v):.1f}" r="3" fill="{color}"/>')
        parts.append(
            f'<text x="{w - pad + 2 - 120}" y="{30 + 14 * i}" font-size="11" fill="{color}">'
            f"{html.escape(name)}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def _svg_bars(bars: list[tuple[str, float, bool]], title: str, bound: float | None) -> str:
    if not bars:
        return ""
    w, row = 640, 20
    h = 30 + row * len(bars)
    hi = max([b for _, b, _ in bars] + [bound or 0]) or 1.0
    parts = [f'<svg viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img">']
    parts.append(f'<text x="0" y="14" font-size="13">{html.escape(title)}</text>')
    for i, (name, value, bad) in enumerate(bars):
        y = 24 + i * row
        length = (w - 260) * value / hi
        parts.append(f'<text x="0" y="{y + 13}" font-size="11">{html.escape(name)}</text>')
        parts.append(
            f'<rect x="160" y="{y + 2}" width="{length:.1f}" height="{row - 6}" '
            f'fill="{"#cf222e" if bad else "#0969da"}"/>'
            f'<text x="{165 + length:.0f}" y="{y + 13}" font-size="10">{value:.3g}'
            f"{' drifted' if bad else ''}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def page(r: Result, bounds: dict[str, float]) -> str:
    color = COLORS.get(r.verdict, "#6e7781")
    live = r.live
    metric = _primary(live) if live else None
    series = {
        f"{v.version} ({v.model})": [
            (d, float(g["metrics"].get(metric, float("nan")))) for d, g in sorted(v.by_day.items())
        ]
        for v in r.versions
        if metric and v.by_day
    }
    chart = _svg_lines(series, f"live {metric} per day, per version", bounds.get(metric or ""))
    drift_chart = ""
    if live is not None and live.drift:
        drift_chart = _svg_bars(
            [(c["column"], float(c["score"]), bool(c["drifted"])) for c in live.drift["columns"]],
            f"drift of {live.version} vs its training reference (score per column; "
            "methods and thresholds in the Evidently report)",
            None,
        )
    reasons = "".join(f"<li>{html.escape(x)}</li>" for x in r.reasons)
    checks = ""
    if live is not None:
        checks = "".join(
            f'<tr><td class="{f.status}">{f.status.upper()}</td><td>{html.escape(f.check)}</td>'
            f"<td>{html.escape(f.message)}</td></tr>"
            for f in live.findings
        )
    rows = "".join(
        f"<tr><td>{html.escape(v.version)}</td><td>{html.escape(v.model)}</td>"
        f"<td>{'live' if v.live else ''}</td><td>{html.escape(v.deployed_at or '-')}</td>"
        f"<td>{v.requests}</td><td>{v.records}</td>"
        + "".join(
            f"<td>{_num(v.latency_ms.get(k), 1)}</td>"
            for k in ("avg", "min", "p50", "p90", "p99", "max")
        )
        + f"<td>{_num(v.errors)}</td><td>{v.fallbacks}</td><td>{v.joined}</td>"
        f"<td>{html.escape(', '.join(f'{k} {_num(x)}' for k, x in v.metrics.items()) or '-')}</td></tr>"
        for v in r.versions
    )
    link = (
        f"<p>Evidently's full drift report of {html.escape(live.version)}: "
        f'<a href="{html.escape(live.drift_html)}">{html.escape(live.drift_html)}</a></p>'
        if live is not None and live.drift_html
        else ""
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>{html.escape(r.environment)}/{html.escape(r.model)}: {html.escape(r.verdict)}</title>
<style>
body {{ font: 14px/1.45 system-ui, sans-serif; margin: 24px; color: #1f2328; max-width: 1100px; }}
.verdict {{ background: {color}; color: white; padding: 16px 20px; border-radius: 8px; }}
.verdict h1 {{ margin: 0; font-size: 28px; }}
table {{ border-collapse: collapse; margin: 12px 0; }}
td, th {{ border: 1px solid #d0d7de; padding: 4px 8px; text-align: left; }}
.pass {{ color: #1a7f37; font-weight: bold; }} .fail {{ color: #cf222e; font-weight: bold; }}
.inconclusive {{ color: #6e7781; font-weight: bold; }} .muted {{ color: #6e7781; }}
</style></head><body>
<div class="verdict"><h1>{html.escape(r.environment)}/{html.escape(r.model)}: {html.escape(r.verdict)}</h1>
<ul>{reasons}</ul>
{f"<p>Action taken: {html.escape(r.action)}</p>" if r.action else ""}</div>
<p class="muted">Window {html.escape(r.window)}: {html.escape(r.start)} to {html.escape(r.end)}.
The live version is the one the environment's stable address serves; only its checks decide the
verdict.</p>
<h2>Checks of the live version{f" {html.escape(live.version)}" if live else ""}</h2>
<table><tr><th>result</th><th>check</th><th>detail</th></tr>{checks}</table>
<h2>Quality on joined actuals</h2>
{chart}
<h2>Drift</h2>
{drift_chart or '<p class="muted">no drift computed</p>'}
{link}
<h2>Serving, per version</h2>
<table><tr><th>version</th><th>model</th><th></th><th>deployed</th><th>requests</th>
<th>records</th><th>avg ms</th><th>min</th><th>p50</th><th>p90</th><th>p99</th><th>max</th>
<th>errors (5xx)</th><th>fallbacks</th><th>joined actuals</th><th>live metrics</th></tr>{rows}</table>
</body></html>
"""


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def prometheus(r: Result) -> str:
    """Textfile-collector metrics: per version, joined actuals, live metrics, drift share; and
    the verdict (0 healthy, 1 degraded, 2 no data)."""
    base = f'environment="{_label(r.environment)}",model="{_label(r.model)}"'
    out = [
        "# HELP bentogate_monitor_verdict 0 healthy, 1 degraded, 2 no data",
        "# TYPE bentogate_monitor_verdict gauge",
        f"bentogate_monitor_verdict{{{base}}} {[HEALTHY, DEGRADED].index(r.verdict) if r.verdict in (HEALTHY, DEGRADED) else 2}",
        "# HELP bentogate_monitor_joined_actuals Predictions joined to an actual in the window",
        "# TYPE bentogate_monitor_joined_actuals gauge",
    ]
    for v in r.versions:
        labels = f'{base},model_tag="{_label(v.model)}",release="{_label(v.release or "")}"'
        out.append(f"bentogate_monitor_joined_actuals{{{labels}}} {v.joined}")
    for name, what, figure in (
        ("requests", "Requests served in the window", lambda v: v.requests),
        ("records", "Records predicted in the window", lambda v: v.records),
        (
            "fallbacks",
            "Requests the previous release answered (router fallback)",
            lambda v: v.fallbacks,
        ),
    ):
        out += [f"# HELP bentogate_monitor_{name} {what}", f"# TYPE bentogate_monitor_{name} gauge"]
        for v in r.versions:
            labels = f'{base},model_tag="{_label(v.model)}",release="{_label(v.release or "")}"'
            out.append(f"bentogate_monitor_{name}{{{labels}}} {figure(v)}")
    out += [
        "# HELP bentogate_monitor_latency_ms Serving latency in the window, from the prediction log",
        "# TYPE bentogate_monitor_latency_ms gauge",
    ]
    for v in r.versions:
        labels = f'{base},model_tag="{_label(v.model)}",release="{_label(v.release or "")}"'
        for stat, value in v.latency_ms.items():
            if value is not None:
                out.append(f'bentogate_monitor_latency_ms{{{labels},stat="{stat}"}} {value:.6g}')
    out += [
        "# HELP bentogate_monitor_live_metric The model's gate metrics on joined actuals",
        "# TYPE bentogate_monitor_live_metric gauge",
    ]
    for v in r.versions:
        labels = f'{base},model_tag="{_label(v.model)}",release="{_label(v.release or "")}"'
        for name, value in v.metrics.items():
            if not math.isnan(value):
                out.append(f'bentogate_monitor_live_metric{{{labels},metric="{name}"}} {value:.6g}')
    out += [
        "# HELP bentogate_monitor_drift_share Share of features drifted vs the training reference",
        "# TYPE bentogate_monitor_drift_share gauge",
    ]
    for v in r.versions:
        labels = f'{base},model_tag="{_label(v.model)}",release="{_label(v.release or "")}"'
        if v.drift and v.drift["features"]:
            share = len(v.drift["drifted_features"]) / v.drift["features"]
            out.append(f"bentogate_monitor_drift_share{{{labels}}} {share:.6g}")
    return "\n".join(out) + "\n"


def write(r: Result, out_dir: Path, bounds: dict[str, float]) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    _atomic(out_dir / "summary.json", json.dumps(r.to_dict(), indent=2, default=str) + "\n")
    _atomic(out_dir / "summary.md", markdown(r))
    _atomic(out_dir / "report.html", page(r, bounds))
    _atomic(out_dir / "metrics.prom", prometheus(r))

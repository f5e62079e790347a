"""The monitor's outputs in reports/monitor/<env>-<model>/: summary.json (everything), summary.md
(for $GITHUB_STEP_SUMMARY: the verdict line first), report.html (one page: verdict on top, then
charts and tables; Evidently's drift report linked), metrics.prom (Prometheus textfile format)."""

from __future__ import annotations

import html
import json
import math
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from models.metrics import LOWER_IS_BETTER
from monitoring.monitor import DEGRADED, HEALTHY, NO_DATA, Result, Version

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
        f"**What to do next:** {next_step(r)}",
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
    lines += [f"\n{skipped(v)}." for v in r.versions if v.skipped_actuals]
    live = r.live
    if live is not None:
        lines += ["", f"Checks of the live version {live.version}:", ""]
        lines += [
            f"- **{f.status.upper()}** {f.check}: {f.message}"
            for f in sorted(live.findings, key=lambda f: STATUS_ORDER[f.status])
        ]
    return "\n".join(lines) + "\n"


def skipped(v: Version) -> str:
    """The joined actuals of a version the monitor left out, in one sentence."""
    return (
        f"{v.skipped_actuals} joined actual(s) of {v.version} skipped, not an actual of the model"
        f" (the first: {v.skipped_why})"
    )


def _svg_lines(series: dict[str, list[tuple[str, float]]], title: str, bound: float | None) -> str:
    """A small line chart: x = days (shared), one line per version (its legend is the page's)."""
    days = sorted({d for pts in series.values() for d, _ in pts})
    values = [y for pts in series.values() for _, y in pts if not math.isnan(y)]
    if not days or not values:
        return f"<p class=muted>{html.escape(title)}: no joined actuals yet.</p>"
    if bound is not None:
        values.append(bound)
    span = (max(values) - min(values)) or abs(max(values)) or 1.0
    lo, hi = min(values) - 0.15 * span, max(values) + 0.15 * span  # the differences, visible
    w, h, pad = 640, 220, 40

    def x(d: str) -> float:
        return pad + (w - 2 * pad) * (days.index(d) / max(len(days) - 1, 1))

    def y(v: float) -> float:
        return h - pad - (h - 2 * pad) * ((v - lo) / (hi - lo))

    parts = [f'<svg viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img">']
    parts.append(f'<text x="{pad}" y="16" font-size="13">{html.escape(title)}</text>')
    parts.append(f'<line x1="{pad}" y1="{h - pad}" x2="{w - pad}" y2="{h - pad}" stroke="#999"/>')
    for v in (lo, (lo + hi) / 2, hi):
        parts.append(f'<text x="2" y="{y(v) + 4:.0f}" font-size="10">{v:.3g}</text>')
    if bound is not None:
        parts.append(
            f'<line x1="{pad}" y1="{y(bound):.1f}" x2="{w - pad}" y2="{y(bound):.1f}" '
            'stroke="#cf222e" stroke-dasharray="4 3"/>'
            f'<text x="{w // 2 - 30}" y="{y(bound) - 4:.0f}" font-size="10" fill="#cf222e">'
            f"gate bound {bound:g}</text>"
        )
    for i, d in enumerate(days):
        if len(days) <= 10 or i % max(len(days) // 8, 1) == 0:
            parts.append(f'<text x="{x(d) - 25:.0f}" y="{h - pad + 14}" font-size="10">{d}</text>')
    for i, pts in enumerate(series.values()):
        color = PALETTE[i % len(PALETTE)]
        coords = " ".join(f"{x(d):.1f},{y(v):.1f}" for d, v in pts if not math.isnan(v))
        parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{coords}"/>')
        for d, v in pts:
            if not math.isnan(v):
                parts.append(f'<circle cx="{x(d):.1f}" cy="{y(v):.1f}" r="3" fill="{color}"/>')
    parts.append("</svg>")
    return "".join(parts)


STATUS_ORDER = {"fail": 0, "inconclusive": 1, "pass": 2}


def _chart_metric(r: Result, bounds: dict[str, float]) -> str | None:
    """The metric worth a chart: the live version's first failed quality check's, else the first
    gate metric any version measured, else the live (or any) version's primary one."""
    live = r.live
    measured = {m for v in r.versions for m in v.metrics}
    if live is not None:
        for f in sorted(live.findings, key=lambda f: STATUS_ORDER[f.status]):
            name = f.check.partition(":")[2]
            if f.check.startswith(("gate:", "ratchet:")) and name in live.metrics:
                return name
    found = next((m for m in bounds if m in measured), None)
    if found is not None:
        return found
    return next((_primary(v) for v in [*([live] if live else []), *r.versions] if v.metrics), None)


def _better(metric: str) -> str:
    return "lower is better" if metric in LOWER_IS_BETTER else "higher is better"


def next_step(r: Result) -> str:
    """What the reader should do about this verdict, in one or two sentences."""
    target = f"ENV={r.environment} MODEL={r.model}"
    if r.verdict == HEALTHY:
        return "Nothing to do: the live version meets every check that had enough data."
    if r.verdict == DEGRADED:
        done = (
            f"This run acted: {r.action}"
            if r.action
            else "This run took no action (report only, or no action configured)."
        )
        return (
            f"{done} Read the failed checks below. If production still serves the degraded "
            f"version, `make rollback {target}` goes back one release; if the actuals have "
            "moved for good, retrain on recent data (`make train`) and deliver again."
        )
    return (
        "Nothing could be judged yet. Make sure predictions are served and their actuals "
        f"arrive (POST /feedback at the stable address, or `make feedback {target} "
        "FILE=actuals.csv`); each check says how many rows it needs."
    )


def _code(text: str) -> str:
    """Escaped, with `commands` set as code."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))


def _verdict_box(r: Result) -> str:
    live = r.live
    name = f"{live.version} ({live.model})" if live else ""
    findings = live.findings if live else []
    failed = [f for f in findings if f.status == "fail"]
    open_ = [f for f in findings if f.status == "inconclusive"]
    judged = [f for f in findings if f.status != "inconclusive"]

    def items(fs: list[Any]) -> str:
        return "".join(
            f"<li><b>{html.escape(f.check)}</b>: {html.escape(f.message)}</li>" for f in fs
        )

    if live is None:
        head = "No version served predictions in the window."
        body = ""
    elif r.verdict == DEGRADED:
        head = (
            f"The live version {html.escape(name)} fails {len(failed)} of {len(findings)} checks:"
        )
        body = f"<ul>{items(failed)}</ul>"
    elif r.verdict == HEALTHY:
        head = (
            f"The live version {html.escape(name)} passes all {len(judged)} checks that had "
            "enough data."
        )
        body = ""
    else:
        head = f"None of the checks of the live version {html.escape(name)} had enough data."
        body = ""
    not_judged = (
        f'<p class="small">Not judged (too little data, not a failure):</p><ul class="small">'
        f"{items(open_)}</ul>"
        if open_ and r.verdict != NO_DATA
        else (f"<ul>{items(open_)}</ul>" if open_ else "")
    )
    return (
        f'<div class="verdict"><h1>{html.escape(r.environment)}/{html.escape(r.model)}: '
        f"{html.escape(r.verdict)}</h1>\n<p>{head}</p>{body}{not_judged}"
        f'<p class="next"><b>What to do next:</b> {_code(next_step(r))}</p></div>'
    )


def _quality_table(r: Result) -> str:
    live = r.live
    names = list(dict.fromkeys(m for v in r.versions for m in v.metrics))
    if not names:
        return (
            '<p class="muted">No prediction has a joined actual in the window yet.</p>'
            + "".join(
                f'<p class="small">{html.escape(skipped(v))}</p>'
                for v in r.versions
                if v.skipped_actuals
            )
        )
    bound_text = {
        f.check.partition(":")[2]: f.bound
        for f in (live.findings if live else [])
        if f.check.startswith("gate:")
    }
    failing = {
        f.check.partition(":")[2] for f in (live.findings if live else []) if f.status == "fail"
    }
    head = "".join(
        f"<th>{html.escape(m)}<br><span class=small>{_better(m)}</span></th>" for m in names
    )
    rows = []
    for v in r.versions:
        cells = "".join(
            f'<td class="{"fail" if v.live and m in failing else ""}">{_num(v.metrics.get(m))}</td>'
            for m in names
        )
        rows.append(
            f"<tr><td>{html.escape(v.version)}{' <b>(live)</b>' if v.live else ''}</td>"
            f"<td>{v.joined}</td>{cells}</tr>"
        )
    bounds_row = "".join(f"<td>{html.escape(bound_text.get(m, '-'))}</td>" for m in names)
    notes = "".join(
        f"<li>{html.escape(m)} of {html.escape(v.version)} not measured: {html.escape(why)}</li>"
        for v in r.versions
        for m, why in v.unmeasured.items()
    ) + "".join(f"<li>{html.escape(skipped(v))}</li>" for v in r.versions if v.skipped_actuals)
    return (
        f"<table><tr><th>version</th><th>joined actuals</th>{head}</tr>{''.join(rows)}"
        f"<tr class=muted><td>gate bound</td><td></td>{bounds_row}</tr></table>"
        + (f'<ul class="small">{notes}</ul>' if notes else "")
    )


def _drift_section(live: Version | None) -> str:
    if live is None or not live.drift:
        reason = next(
            (f.message for f in (live.findings if live else []) if f.check == "drift"), ""
        )
        return (
            f'<p class="muted">No drift computed{": " + html.escape(reason) if reason else ""}.</p>'
        )
    d = live.drift
    finding = next((f for f in live.findings if f.check == "drift"), None)
    drifted = d["drifted_features"]
    pred = next((c for c in d["columns"] if c["column"] == "prediction"), None)
    summary = (
        f"{len(drifted)} of {d['features']} features drifted"
        + (f" ({', '.join(drifted)})" if drifted else "")
        + (f"; the predictions {'drifted' if pred['drifted'] else 'did not drift'}" if pred else "")
        + f". {d['rows']} live records compared with {d['reference_rows']} rows of the training "
        "reference."
    )
    if finding is not None and finding.status == "inconclusive":
        summary += f" Not judged: {finding.message}; shown for information."
    rows = "".join(
        f"<tr><td>{html.escape(c['column'])}</td>"
        f'<td class="{"fail" if c["drifted"] else "pass"}">{"drifted" if c["drifted"] else "no"}</td>'
        f"<td>{html.escape(c['method'])}</td><td>{_num(float(c['score']), 3)}</td>"
        f"<td>{'&lt;' if 'p_value' in c['method'] else '&ge;'} {c['threshold']:g}</td>"
        f"<td>{c.get('missing', 0):.1%} / {c.get('reference_missing', 0):.1%}</td></tr>"
        for c in sorted(d["columns"], key=lambda c: (not c["drifted"], c["column"]))
    )
    link = (
        f'<p>Evidently\'s full drift report: <a href="{html.escape(live.drift_html)}">'
        f"{html.escape(live.drift_html)}</a></p>"
        if live.drift_html
        else ""
    )
    return (
        f"<p>{html.escape(summary)}</p>{link}"
        f"<details{' open' if drifted else ''}><summary>Per column (drifted first)</summary>"
        "<table><tr><th>column</th><th>drifted</th><th>test</th><th>score</th>"
        f"<th>drifted when score</th><th>missing (live / reference)</th></tr>{rows}</table>"
        "</details>"
    )


def page(r: Result, bounds: dict[str, float]) -> str:
    color = COLORS.get(r.verdict, "#6e7781")
    live = r.live
    metric = _chart_metric(r, bounds)
    series = {
        f"{v.version} ({v.model})": [
            (d, float(g["metrics"].get(metric, float("nan")))) for d, g in sorted(v.by_day.items())
        ]
        for v in r.versions
        if metric and v.by_day
    }
    bound = bounds.get(metric or "")
    chart = (
        _svg_lines(series, f"live {metric} per day, per version", bound)
        if metric
        else '<p class="muted">No live metric per day: no joined actuals yet.</p>'
    )
    legend = " ".join(
        f'<span style="color:{PALETTE[i % len(PALETTE)]}">&#9632; {html.escape(name)}</span>'
        for i, name in enumerate(series)
    )
    chart_note = (
        f'<p class="small">{legend}. {html.escape(metric)}: {_better(metric)}'
        + (f"; dashed red line: the gate's bound {bound:g}" if bound is not None else "")
        + ".</p>"
        if metric and series
        else ""
    )
    checks = ""
    if live is not None:
        checks = "".join(
            f'<tr><td class="{f.status}">{f.status.upper()}</td><td>{html.escape(f.check)}</td>'
            f"<td>{html.escape(f.message)}</td></tr>"
            for f in sorted(live.findings, key=lambda f: STATUS_ORDER[f.status])
        )
    rows = "".join(
        f"<tr><td>{html.escape(v.version)}</td><td>{html.escape(v.model)}</td>"
        f"<td>{'<b>live</b>' if v.live else ''}</td><td>{html.escape(v.deployed_at or '-')}</td>"
        f"<td>{v.requests}</td><td>{v.records}</td>"
        + "".join(
            f"<td>{_num(v.latency_ms.get(k), 1)}</td>"
            for k in ("avg", "min", "p50", "p90", "p99", "max")
        )
        + f"<td>{_num(v.errors)}</td><td>{v.fallbacks}</td></tr>"
        for v in r.versions
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>{html.escape(r.environment)}/{html.escape(r.model)}: {html.escape(r.verdict)}</title>
<style>
body {{ font: 14px/1.45 system-ui, sans-serif; margin: 24px; color: #1f2328; max-width: 1100px; }}
.verdict {{ background: {color}; color: white; padding: 16px 20px; border-radius: 8px; }}
.verdict h1 {{ margin: 0 0 6px; font-size: 28px; }}
.verdict p, .verdict ul {{ margin: 4px 0; }} .verdict .next {{ margin-top: 10px; }}
table {{ border-collapse: collapse; margin: 12px 0; }}
td, th {{ border: 1px solid #d0d7de; padding: 4px 8px; text-align: left; vertical-align: top; }}
.pass {{ color: #1a7f37; font-weight: bold; }} .fail {{ color: #cf222e; font-weight: bold; }}
.inconclusive {{ color: #6e7781; font-weight: bold; }} .muted {{ color: #6e7781; }}
.small {{ font-size: 12px; }}
.verdict code {{ background: rgba(255, 255, 255, 0.2); padding: 0 3px; }}
</style></head><body>
{_verdict_box(r)}
<p class="muted">Window {html.escape(r.window)}: {html.escape(r.start)} to {html.escape(r.end)}.
The live version is the one the environment's stable address serves; only its checks decide the
verdict. A check with too few rows is not judged: it neither passes nor fails.</p>
<h2>Checks of the live version{f" {html.escape(live.version)}" if live else ""}</h2>
<table><tr><th>result</th><th>check</th><th>detail</th></tr>{checks}</table>
<h2>Quality on joined actuals (the model's gate metrics)</h2>
{_quality_table(r)}
{chart}
{chart_note}
<h2>Serving, per version</h2>
<table><tr><th rowspan=2>version</th><th rowspan=2>model</th><th rowspan=2></th>
<th rowspan=2>deployed</th><th rowspan=2>requests</th><th rowspan=2>records</th>
<th colspan=6>latency per request (ms)</th><th rowspan=2>errors (5xx)</th>
<th rowspan=2>fallbacks</th></tr>
<tr><th>avg</th><th>min</th><th>p50</th><th>p90</th><th>p99</th><th>max</th></tr>{rows}</table>
<h2>Drift of the live version against its training reference</h2>
{_drift_section(live)}
</body></html>
"""


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _version_labels(base: str, v: Version) -> str:
    return f'{base},model_tag="{_label(v.model)}",release="{_label(v.release or "")}"'


def _gauge(name: str, description: str, samples: Iterable[tuple[str, Any]]) -> list[str]:
    """One gauge in the text format: HELP and TYPE, then a line per (labels, value)."""
    return [
        f"# HELP {name} {description}",
        f"# TYPE {name} gauge",
        *(f"{name}{{{labels}}} {value}" for labels, value in samples),
    ]


def prometheus(r: Result) -> str:
    """Textfile-collector metrics: per version, joined actuals, live metrics, drift share; and
    the verdict (0 healthy, 1 degraded, 2 no data)."""
    base = f'environment="{_label(r.environment)}",model="{_label(r.model)}"'
    labelled = [(_version_labels(base, v), v) for v in r.versions]  # each version, its labels
    verdict = [HEALTHY, DEGRADED].index(r.verdict) if r.verdict in (HEALTHY, DEGRADED) else 2
    out = _gauge("bentogate_monitor_verdict", "0 healthy, 1 degraded, 2 no data", [(base, verdict)])
    for name, what, attribute in (
        ("joined_actuals", "Predictions joined to an actual in the window", "joined"),
        ("requests", "Requests served in the window", "requests"),
        ("records", "Records predicted in the window", "records"),
        ("fallbacks", "Requests the previous release answered (router fallback)", "fallbacks"),
        ("skipped_actuals", "Joined actuals left out: no actual of the model", "skipped_actuals"),
    ):
        out += _gauge(
            f"bentogate_monitor_{name}",
            what,
            [(labels, getattr(v, attribute)) for labels, v in labelled],
        )
    out += _gauge(
        "bentogate_monitor_latency_ms",
        "Serving latency in the window, from the prediction log",
        [
            (f'{labels},stat="{stat}"', f"{value:.6g}")
            for labels, v in labelled
            for stat, value in v.latency_ms.items()
            if value is not None
        ],
    )
    out += _gauge(
        "bentogate_monitor_live_metric",
        "The model's gate metrics on joined actuals",
        [
            (f'{labels},metric="{metric}"', f"{value:.6g}")
            for labels, v in labelled
            for metric, value in v.metrics.items()
            if not math.isnan(value)
        ],
    )
    out += _gauge(
        "bentogate_monitor_drift_share",
        "Share of features drifted vs the training reference",
        [
            (labels, f"{len(v.drift['drifted_features']) / v.drift['features']:.6g}")
            for labels, v in labelled
            if v.drift and v.drift["features"]
        ],
    )
    return "\n".join(out) + "\n"


def strict(value: Any) -> Any:
    """`value` with every non-finite number as null: JSON has no NaN or Infinity, and a strict
    parser (jq, JavaScript, Go) refuses the bare words Python would write."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: strict(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [strict(v) for v in value]
    return value


def write(r: Result, out_dir: Path, bounds: dict[str, float]) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = json.dumps(strict(r.to_dict()), indent=2, default=str, allow_nan=False)
    _atomic(out_dir / "summary.json", summary + "\n")
    _atomic(out_dir / "summary.md", markdown(r))
    _atomic(out_dir / "report.html", page(r, bounds))
    _atomic(out_dir / "metrics.prom", prometheus(r))

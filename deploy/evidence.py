"""The reviewer's evidence for a release, as Markdown: provenance, quality gate, load-test gate,
and, when the release went out as a canary or a shadow, its step report or shadow comparison.

Everything comes from the model's own record in the store and the load-test report of this very
Bento, so what the reviewer reads is what would be deployed. Missing evidence is said, not hidden.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import bentoml

from core import registry


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def provenance(model_tag: str) -> tuple[list[str], dict[str, Any]]:
    model = bentoml.models.get(model_tag)
    meta, labels = registry.metadata(model), model.info.labels
    data, split = meta.get("data", {}), meta.get("split", {})
    prod = registry.production(model.tag.name)
    lines = [
        f"| model | `{model.tag}` (stage {labels.get('stage', '?')}, created "
        f"{model.info.creation_time:%Y-%m-%d %H:%M} UTC) |",
        f"| commit | `{labels.get('git_commit', 'unknown')}` |",
        f"| data | {data.get('source', '?')}, {data.get('rows', '?')} rows, sha256 "
        f"`{str(data.get('sha256', '?'))[:16]}…` |",
        f"| validation | {split.get('validation_rows', '?')} rows"
        + (
            f", {split['validation_from']} to {split['validation_to']}"
            if "validation_from" in split
            else ""
        )
        + " |",
        f"| parameters | seed {meta.get('seed')}, `{json.dumps(meta.get('params', {}))}` |",
        f"| versions | Python {meta.get('python_version')}, scikit-learn {meta.get('sklearn_version')}, "
        f"BentoML {meta.get('bentoml_version')} |",
        f"| production now | {f'`{prod.tag}`' if prod is not None else 'none (first release)'} |",
    ]
    return lines, meta


def quality(meta: dict[str, Any]) -> list[str]:
    gate = meta.get("gate", {})
    prod = gate.get("production_metrics") or {}
    lines = [
        f"**Quality gate: {'passed' if gate.get('accepted') else 'FAILED'}**"
        f" (production `{gate.get('production_tag') or 'none'}`)",
        "",
        "| check | candidate | bound | result |",
        "|---|---|---|---|",
    ]
    for c in gate.get("checks", []):
        lines.append(
            f"| {c['name']} | {_fmt(c['measured'])} | {c['bound']} | "
            f"{'pass' if c['passed'] else '**FAIL**'} |"
        )
    overall = meta.get("metrics", {}).get("overall", {})
    lines += ["", "| metric | candidate | production |", "|---|---|---|"]
    for k, v in overall.items():
        lines.append(f"| {k} | {_fmt(v)} | {_fmt(prod[k]) if k in prod else '-'} |")
    return lines


def loadtest(bento: str, reports_dir: Path) -> list[str]:
    summary = reports_dir / "loadtest" / "summary.json"
    report = json.loads(summary.read_text()) if summary.is_file() else {}
    if report.get("targets", {}).get("candidate") != bento:
        return [f"**Load test: no report for `{bento}`.** Run `make loadtest` before approving."]
    md = (reports_dir / "loadtest" / "summary.md").read_text().strip().splitlines()
    return [
        line.replace("### ", "**", 1) + "**" if line.startswith("### ") else line for line in md
    ]


def strategy(bento: str, model_tag: str, reports_dir: Path) -> list[str]:
    """The canary's step report (STRATEGY=canary) and the shadow comparison (`make shadow-report`
    after STRATEGY=shadow), when they are about this release; nothing otherwise."""
    lines: list[str] = []
    canary = reports_dir / "canary.json"
    if canary.is_file() and json.loads(canary.read_text()).get("bento") == bento:
        lines += ["", (reports_dir / "canary.md").read_text().strip()]
    shadow = reports_dir / "shadow.json"
    if shadow.is_file() and json.loads(shadow.read_text()).get("shadow") == model_tag:
        text = (reports_dir / "shadow.md").read_text().strip()
        lines += ["", text.replace("## ", "### ", 1)]
    return lines


def markdown(bento: str, model_tag: str, reports_dir: Path, links: list[str] | None = None) -> str:
    prov, meta = provenance(model_tag)
    lines = [
        f"## Release evidence: `{bento}`",
        "",
        "| | |",
        "|---|---|",
        *prov,
        "",
        *quality(meta),
        "",
        *loadtest(bento, reports_dir),
        *strategy(bento, model_tag, reports_dir),
    ]
    if links:
        lines += [
            "",
            "Reports: " + ", ".join(f"[{n}]({u})" for n, _, u in (x.partition("=") for x in links)),
        ]
    return "\n".join(lines) + "\n"

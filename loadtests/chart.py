"""Latency percentiles over time as a small self-contained SVG: no plotting dependency needed."""

from __future__ import annotations

from html import escape

import numpy as np
import pandas as pd

W, H, PAD = 720, 320, 48
COLORS = {"candidate": "#1f77b4", "production": "#ff7f0e"}


def _series(frame: pd.DataFrame) -> pd.DataFrame:
    """P50 and P90 per second of measured time, rounds laid end to end."""
    parts, offset = [], 0.0
    for _, part in frame.groupby("round", sort=True):
        t = part["t_start"] - part["t_start"].min()
        parts.append(part.assign(elapsed=t + offset))
        offset += float(np.ceil(t.max() + 1e-9))
    df = pd.concat(parts)
    df["second"] = df["elapsed"].astype(int)
    # pandas takes a list of quantiles (documented); the stubs accept only arrays.
    return df.groupby("second")["latency_ms"].quantile([0.5, 0.9]).unstack()  # type: ignore[arg-type]


def percentiles_svg(frames: dict[str, pd.DataFrame]) -> str:
    series = {name: _series(f) for name, f in frames.items() if len(f)}
    xmax = max((s.index.max() for s in series.values()), default=1) or 1
    ymax = max((s.max().max() for s in series.values()), default=1) * 1.1 or 1

    def pt(x: float, y: float) -> str:
        return f"{PAD + x / xmax * (W - 2 * PAD):.1f},{H - PAD - y / ymax * (H - 2 * PAD):.1f}"

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="11">',
        f'<rect width="{W}" height="{H}" fill="white"/>',
        f'<text x="{W / 2}" y="18" text-anchor="middle" font-size="13">Latency over time (ms)</text>',
        f'<line x1="{PAD}" y1="{H - PAD}" x2="{W - PAD}" y2="{H - PAD}" stroke="black"/>',
        f'<line x1="{PAD}" y1="{PAD}" x2="{PAD}" y2="{H - PAD}" stroke="black"/>',
        f'<text x="{W / 2}" y="{H - 12}" text-anchor="middle">seconds of measured load</text>',
    ]
    for i in range(5):
        y = ymax * i / 4
        out.append(
            f'<text x="{PAD - 6}" y="{H - PAD - i / 4 * (H - 2 * PAD) + 4:.1f}" text-anchor="end">{y:.0f}</text>'
        )
    legend_y = PAD
    for name, s in series.items():
        color = COLORS.get(name, "#2ca02c")
        for q, dash in ((0.5, ""), (0.9, ' stroke-dasharray="5,3"')):
            points = " ".join(pt(x, y) for x, y in zip(s.index, s[q], strict=True))
            out.append(
                f'<polyline fill="none" stroke="{color}" stroke-width="1.5"{dash} points="{points}"/>'
            )
            out.append(
                f'<text x="{W - PAD - 150}" y="{legend_y}" fill="{color}">{escape(name)} P{int(q * 100)}'
                f"{' (dashed)' if dash else ''}</text>"
            )
            legend_y += 14
    out.append("</svg>")
    return "\n".join(out) + "\n"

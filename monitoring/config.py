"""monitoring/config.yaml: the monitor's checks and what a breach does, validated on load."""

from __future__ import annotations

import re
from collections.abc import Collection
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from core.yamlconf import ConfigError, line_of, load_yaml, shown

__all__ = ["ConfigError", "MonitorConfig", "load", "parse_window"]

_WINDOW = re.compile(r"^\s*(\d+)\s*([mhdw])\s*$")
_SECONDS = {"m": 60, "h": 3600, "d": 86400, "w": 604800}
MAX_WINDOW_S = 520 * 604800  # ten years: past that, a typo


def parse_window(text: str) -> int:
    """'24h' -> seconds; minutes, hours, days or weeks."""
    m = _WINDOW.match(str(text))
    if not m or not 0 < int(m[1]) * _SECONDS[m[2]] <= MAX_WINDOW_S:
        raise ValueError(
            f"window {text!r}: expected a positive number and m, h, d or w, e.g. 24h,"
            " of at most 520w"
        )
    return int(m[1]) * _SECONDS[m[2]]


def _window(text: str) -> str:
    parse_window(text)
    return text


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class QualityConfig(_Strict):
    min_rows: int = Field(default=200, ge=1)
    gate_bounds: bool = True
    ratchet_min_rows: int = Field(default=200, ge=1)


class DriftConfig(_Strict):
    sample_rows: int = Field(default=5000, ge=100, le=100_000)
    min_rows: int = Field(default=500, ge=10)
    max_drifted_share: float = Field(default=0.5, gt=0, le=1)


class MonitorConfig(_Strict):
    window: Annotated[str, AfterValidator(_window)] = "24h"
    quality: QualityConfig = QualityConfig()
    drift: DriftConfig = DriftConfig()
    on_breach: dict[str, Literal["notify", "rollback"]] = {}

    def action(self, environment: str) -> Literal["notify", "rollback"]:
        return self.on_breach.get(environment, "notify")


def load(path: Path, environments: Collection[str] | None = None) -> MonitorConfig:
    """The config at `path`; given deploy/config.yaml's `environments`, an `on_breach` key that
    is none of them is refused (a typo would leave that environment on notify, silently)."""
    cfg = load_yaml(path, MonitorConfig)
    if environments is not None:
        have = ", ".join(environments)
        errors = [
            f"{shown(path)}:{line_of(path, ('on_breach', env)) or 1}: on_breach.{env}: "
            f"no environment {env!r} in the deploy config (have: {have})"
            for env in cfg.on_breach
            if env not in environments
        ]
        if errors:
            raise ConfigError("\n".join(errors))
    return cfg

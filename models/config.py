"""Versioned per-model configuration (models/<name>/config.yaml): parameters and thresholds.

Loading fails fast with the file, line and field of every problem.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from core import thresholds
from core.yamlconf import ConfigError, load_yaml

__all__ = ["ConfigError", "ModelConfig", "load_config"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataConfig(_Strict):
    source: str = "default"


class SplitConfig(_Strict):
    validation_weeks: int | None = Field(default=None, ge=1, le=520)
    validation_fraction: float | None = Field(default=None, gt=0, lt=1)

    @model_validator(mode="after")
    def _one_rule(self) -> SplitConfig:
        if self.validation_weeks is not None and self.validation_fraction is not None:
            raise ValueError("give validation_weeks (time split) or validation_fraction, not both")
        return self


class RatchetConfig(_Strict):
    metric: str
    tolerance: float = Field(ge=0)


class GateConfig(_Strict):
    thresholds: dict[str, str]
    ratchet: RatchetConfig | None = None

    @field_validator("thresholds")
    @classmethod
    def _parse(cls, value: dict[str, str]) -> dict[str, str]:
        for metric, text in value.items():
            thresholds.parse(str(text), metric=metric)
        return value

    def parsed(self) -> list[thresholds.Threshold]:
        return [thresholds.parse(str(t), metric=m) for m, t in self.thresholds.items()]


class ParityConfig(_Strict):
    """How close a faster runtime must come to the predict path, on every validation row, to be
    admitted (and the golden prediction at start-up)."""

    rtol: float = Field(default=1e-6, ge=0, le=0.1)
    atol: float = Field(default=1e-6, ge=0)
    probability_atol: float = Field(default=1e-5, ge=0, le=0.1)


class ServingConfig(_Strict):
    # The runtime to serve: "auto" is the fastest admitted one (compiled, onnx, then sklearn).
    runtime: Literal["auto", "compiled", "onnx", "sklearn"] = "auto"
    parity: ParityConfig = ParityConfig()
    max_records: int = Field(default=1000, ge=1, le=100_000)


class ModelConfig(_Strict):
    seed: int = Field(ge=0, le=2**32 - 1)
    data: DataConfig = DataConfig()
    split: SplitConfig = SplitConfig()
    params: dict[str, Any] = {}
    gate: GateConfig
    serving: ServingConfig = ServingConfig()


def load_config(path: Path) -> ModelConfig:
    return load_yaml(path, ModelConfig)

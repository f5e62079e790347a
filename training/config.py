"""Versioned per-model configuration (models/<name>/config.yaml): parameters and thresholds.

Loading fails fast with the file, line and field of every problem.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from training import thresholds

T = TypeVar("T", bound=BaseModel)


class ConfigError(ValueError):
    pass


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


class ServingConfig(_Strict):
    max_records: int = Field(default=1000, ge=1, le=100_000)


class ModelConfig(_Strict):
    seed: int = Field(ge=0, le=2**32 - 1)
    data: DataConfig = DataConfig()
    split: SplitConfig = SplitConfig()
    params: dict[str, Any] = {}
    gate: GateConfig
    serving: ServingConfig = ServingConfig()


def _line_of(root: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """1-based line of the YAML node at `loc`, or of its nearest existing parent."""
    node, line = root, None
    for key in loc:
        if node is None:
            break
        line = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            node = next((v for k, v in node.value if k.value == str(key)), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            node = node.value[key]
        else:
            node = None
    return node.start_mark.line + 1 if node is not None else line


def load_config(path: Path) -> ModelConfig:
    return load_yaml(path, ModelConfig)


def load_yaml(path: Path, model: type[T]) -> T:
    """Validate a YAML file into `model`; every error names file, line and field."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config: {exc.strerror}") from None
    try:
        raw = yaml.safe_load(text)
        root = yaml.compose(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError(f"{where}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}:1: expected a mapping of settings at the top level")
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        lines = []
        for err in exc.errors(include_url=False, include_input=False):
            loc = tuple(err["loc"])
            line = _line_of(root, loc)
            field = ".".join(str(p) for p in loc) or "(top level)"
            lines.append(f"{path}:{line or 1}: {field}: {err['msg']}")
        raise ConfigError("\n".join(lines)) from None

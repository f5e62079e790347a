"""Versioned per-model configuration (models/<name>/config.yaml): parameters and thresholds.

Loading fails fast with the file, line and field of every problem.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from core import thresholds
from core.thresholds import Threshold
from core.yamlconf import ConfigError, line_of, load_yaml, shown
from models import MODELS_DIR

# What the load-test gate measures (loadtests/gate.py).
LoadMetric = Literal["p50", "p90", "p99", "error_rate", "rps"]

__all__ = ["ConfigError", "ModelConfig", "check_metrics", "load_config", "package_config"]


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

    def parsed(self) -> list[Threshold]:  # `thresholds` in this class is the field
        return [thresholds.parse(str(t), metric=m) for m, t in self.thresholds.items()]


class ParityConfig(_Strict):
    """How close a faster runtime must come to the predict path, on every validation row, to be
    admitted (and the golden prediction at start-up)."""

    # ONNX Runtime sums tree leaves in float32: ~1e-6 relative on tree regressors.
    rtol: float = Field(default=1e-5, ge=0, le=0.1)
    atol: float = Field(default=1e-6, ge=0)
    probability_atol: float = Field(default=1e-5, ge=0, le=0.1)


class ServingConfig(_Strict):
    # The runtime to serve: "auto" is the fastest admitted one (compiled, onnx, then sklearn).
    runtime: Literal["auto", "compiled", "onnx", "sklearn"] = "auto"
    parity: ParityConfig = ParityConfig()
    max_records: int = Field(default=1000, ge=1, le=100_000)
    # Requests in flight per replica beyond which the service answers 503, and the time a request
    # may take before it is abandoned.
    max_concurrency: int = Field(default=256, ge=1, le=10_000)
    timeout_s: float = Field(default=10.0, gt=0, le=600)


class PersistenceConfig(_Strict):
    """How the fitted model is saved (core/modelfile.py). `trusted`: types beyond skops' defaults
    the model holds (its own functions, say), listed once reviewed; `allow_pickle`: only for a
    model skops cannot save, since a pickle runs code when it loads."""

    trusted: list[Annotated[str, Field(pattern=r"^[A-Za-z_][\w.]*$")]] = []
    allow_pickle: bool = False


class ModelConfig(_Strict):
    seed: int = Field(ge=0, le=2**32 - 1)
    data: DataConfig = DataConfig()
    split: SplitConfig = SplitConfig()
    params: dict[str, Any] = {}
    gate: GateConfig
    serving: ServingConfig = ServingConfig()
    persistence: PersistenceConfig = PersistenceConfig()
    loadtest: LoadtestConfig = Field(default_factory=lambda: LoadtestConfig())
    deploy: DeployConfig = Field(default_factory=lambda: DeployConfig())


def load_config(path: Path, metrics: Collection[str] | None = None) -> ModelConfig:
    """The config at `path`; given the `metrics` its model's task computes
    (`models.metrics.names`), a gate naming any other is refused, before anything is trained."""
    cfg = load_yaml(path, ModelConfig)
    if metrics is not None:
        check_metrics(cfg, path, metrics)
    return cfg


def check_metrics(cfg: ModelConfig, path: Path, metrics: Collection[str]) -> None:
    """ConfigError naming the line of every gate threshold or ratchet on a metric not in
    `metrics`: a typo would otherwise read as "not measured", a rejection after a whole run."""
    named = [(("gate", "thresholds", m), m) for m in cfg.gate.thresholds]
    if cfg.gate.ratchet is not None:
        named.append((("gate", "ratchet", "metric"), cfg.gate.ratchet.metric))
    known = ", ".join(metrics)
    errors = [
        f"{shown(path)}:{line_of(path, loc) or 1}: {'.'.join(loc)}: no metric {name!r} "
        f"for this model (known: {known})"
        for loc, name in named
        if name not in metrics
    ]
    if errors:
        raise ConfigError("\n".join(errors))


# ---- per-model overrides of the load-test gate and the deploy environments ----------------------


def _bound(text: str) -> str:
    """A load-test bound under its metric's key: "< 120ms", not "p90 < 120ms"."""
    text = str(text)
    if re.match(r"\s*[A-Za-z_][\w.]*\s*[<>]", text):
        raise ValueError(
            f"{text!r}: give the bound only, e.g. '< 120ms' (the key names the metric)"
        )
    try:
        thresholds.parse(text, metric="bound")
    except thresholds.ThresholdError:
        raise ValueError(
            f"cannot read bound {text!r}: expected '<op> <number>[ms|s|%]', e.g. '< 120ms'"
        ) from None
    return text


class LoadtestLoad(_Strict):
    """Keys of loadtests/config.yaml `load:`; those given replace the global ones for this model."""

    users: int | None = Field(default=None, ge=1, le=1000)
    spawn_rate: float | None = Field(default=None, gt=0)
    rate_per_user: float | None = Field(default=None, gt=0, le=1000)
    duration_s: float | None = Field(default=None, gt=0, le=3600)
    warmup_s: float | None = Field(default=None, ge=0, le=600)
    workers: int | None = Field(default=None, ge=0, le=16)


class LoadtestTraffic(_Strict):
    """Keys of loadtests/config.yaml `traffic:`, for this model."""

    bodies: int | None = Field(default=None, ge=1)
    multi_record_share: float | None = Field(default=None, ge=0, le=1)
    multi_record_size: int | None = Field(default=None, ge=1)


class LoadtestConfig(_Strict):
    """This model's load-test gate: thresholds by metric replace the global ones of that metric
    (a command-line THRESHOLDS= still wins); load and traffic keys replace the global keys."""

    thresholds: dict[LoadMetric, Annotated[str, AfterValidator(_bound)]] = {}
    load: LoadtestLoad = LoadtestLoad()
    traffic: LoadtestTraffic = LoadtestTraffic()


class DeployEnvironment(_Strict):
    """This model in one environment of deploy/config.yaml."""

    # Local target: the model's stable address is this port, instead of the environment's port +
    # the model's port_offset.
    port: int | None = Field(default=None, ge=1024, le=65535)
    # Kubernetes target: where the post-rollout smoke test reaches this model (ingress URL).
    url: str | None = Field(default=None, pattern=r"^https?://")


class DeployConfig(_Strict):
    """Where this model answers: each environment's port + port_offset on the local target (the
    default model keeps offset 0); collisions between models are refused when deploy loads them."""

    port_offset: int = Field(default=0, ge=0, le=999)
    environments: dict[str, DeployEnvironment] = {}


def package_config(
    name: str,
    recorded: Mapping[str, Any] | None = None,
    metrics: Collection[str] | None = None,
) -> ModelConfig | None:
    """A model's config: its package's file when the package is here (the reviewed, current one),
    else the config recorded with the model at registration (`info.metadata["config"]`), else
    None. Errors name file, line and field (or the recorded config and field); the file's gate
    metrics are checked against `metrics` when given (see `load_config`)."""
    path = MODELS_DIR / name / "config.yaml"
    if path.is_file():
        return load_config(path, metrics)
    if recorded is None:
        return None
    try:
        return ModelConfig.model_validate(recorded)
    except ValidationError as exc:
        err = exc.errors(include_url=False, include_input=False)[0]
        field = ".".join(str(p) for p in err["loc"])
        raise ConfigError(f"config recorded with model {name!r}: {field}: {err['msg']}") from None

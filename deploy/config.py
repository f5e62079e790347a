"""Deploy configuration (deploy/config.yaml): environments, their targets and parameters."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from core.yamlconf import ConfigError, load_yaml
from deploy.canary import CanaryConfig
from deploy.routing import RouterLimits

__all__ = ["ConfigError", "DeployConfig", "Environment", "load"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LocalConfig(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(ge=1024, le=65535)
    ready_timeout_s: float = Field(default=90, gt=0, le=900)
    drain_s: float = Field(default=1.0, ge=0, le=60)
    # Up but answering 503 this long: the model failed its golden check and never will be ready.
    not_ready_grace_s: float = Field(default=5.0, gt=0, le=300)
    router: RouterLimits = RouterLimits()  # nginx's limits and the stable release's time budget

    @field_validator("host")
    @classmethod
    def _loopback(cls, value: str) -> str:
        if not value.startswith("127."):
            raise ValueError("the local target serves on loopback only (127.0.0.0/8)")
        return value


class KubernetesConfig(_Strict):
    namespace: str = Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=63)
    image_repository: str = Field(min_length=1)
    replicas: int = Field(default=2, ge=1, le=100)
    max_replicas: int = Field(default=6, ge=1, le=100)
    target_cpu_percent: int = Field(default=70, ge=10, le=100)
    min_available: int = Field(default=1, ge=0)
    cpu: str = Field(default="1", pattern=r"^\d+(\.\d+)?m?$")
    memory: str = Field(default="768Mi", pattern=r"^\d+(Ki|Mi|Gi)$")
    rollout_timeout_s: int = Field(default=300, ge=10, le=3600)
    url: str | None = None

    @model_validator(mode="after")
    def _bounds(self) -> KubernetesConfig:
        if self.max_replicas < self.replicas:
            raise ValueError(f"max_replicas ({self.max_replicas}) < replicas ({self.replicas})")
        if self.min_available >= self.replicas:
            raise ValueError(
                f"min_available ({self.min_available}) must be below replicas ({self.replicas}),"
                " or no node could ever be drained"
            )
        return self


class Environment(_Strict):
    target: Literal["local", "kubernetes"]
    promotes_model: bool = False
    local: LocalConfig | None = None
    kubernetes: KubernetesConfig | None = None
    canary: CanaryConfig = CanaryConfig()  # STRATEGY=canary: steps, interval, checks

    @model_validator(mode="after")
    def _has_target_section(self) -> Environment:
        if getattr(self, self.target) is None:
            raise ValueError(f"target is {self.target!r} but there is no {self.target!r} section")
        return self


class DeployConfig(_Strict):
    environments: dict[str, Environment]

    @field_validator("environments")
    @classmethod
    def _names(cls, value: dict[str, Environment]) -> dict[str, Environment]:
        for name in value:
            if not re.fullmatch(r"[a-z][a-z0-9-]{0,30}", name):
                raise ValueError(f"environment name {name!r}: use lowercase letters, digits, '-'")
        ports = [e.local.port for e in value.values() if e.local]
        if len(ports) != len(set(ports)):
            raise ValueError(f"two environments share a local port: {ports}")
        return value

    def env(self, name: str, target: str | None = None) -> Environment:
        """Environment `name`, its target optionally overridden (e.g. by a workflow variable)."""
        if name not in self.environments:
            raise ConfigError(
                f"unknown environment {name!r}: use one of {sorted(self.environments)}"
            )
        env = self.environments[name]
        if target and target != env.target:
            try:
                env = Environment.model_validate({**env.model_dump(), "target": target})
            except ValidationError as exc:
                msg = exc.errors(include_url=False)[0]["msg"]
                raise ConfigError(f"environment {name!r} with target {target!r}: {msg}") from None
        return env


def load(path: Path) -> DeployConfig:
    return load_yaml(path, DeployConfig)

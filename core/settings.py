"""Runtime settings: one typed object, read from BENTOGATE_* environment variables.

All paths derive from the project root. Nothing is read or written at import time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ROOT = Path(__file__).resolve().parents[1]
# A BentoML model tag: name[:version] (BentoML's own characters, lowercase).
TAG_PATTERN = r"^[a-z0-9][a-z0-9_.-]*(:[a-z0-9][a-z0-9_.-]*)?$"


class Settings(BaseSettings):
    # An empty variable is an unset one: a workflow passes an unset secret or variable as "".
    model_config = SettingsConfigDict(
        env_prefix="BENTOGATE_", extra="ignore", env_ignore_empty=True
    )

    model: str = Field(
        default="sales", description="Model package under models/ to train and serve."
    )
    config: Path | None = Field(default=None, description="Override models/<model>/config.yaml.")
    data_source: str | None = Field(default=None, description="Override the config's data.source.")
    model_tag: str | None = Field(
        default=None, pattern=TAG_PATTERN, description="Serve this model tag, not production."
    )
    work_dir: Path = ROOT / ".bentogate" / "run"
    reports_dir: Path = ROOT / "reports"
    runtime: Literal["auto", "compiled", "onnx", "sklearn"] | None = Field(
        default=None,
        description="Serve with this runtime instead of the model config's serving.runtime "
        "(auto: the fastest one admitted at registration).",
    )
    max_body_bytes: int = Field(default=1 << 20, ge=1024, description="Larger bodies get 413.")
    deploy_config: Path = Field(
        default=ROOT / "deploy" / "config.yaml", description="Deploy environments and targets."
    )
    deploy_dir: Path = Field(
        default=ROOT / ".bentogate" / "deploy",
        description="State of the local deploy target: releases, history, logs.",
    )
    slack_webhook_url: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("BENTOGATE_SLACK_WEBHOOK_URL", "SLACK_WEBHOOK_URL"),
        description="Slack incoming webhook for delivery notifications (a secret).",
    )
    prediction_log: Literal["off"] | Path | None = Field(
        default=None,
        description="Append a JSON line per prediction to this file (unset: standard output; "
        "off: no log).",
    )
    actuals_log: Literal["off"] | Path | None = Field(
        default=None,
        description="Append a JSON line per actual received by POST /feedback to this file "
        "(unset: standard output; off: none kept, the endpoint still answers).",
    )
    log_max_bytes: int = Field(
        default=100 * 2**20,
        ge=4096,
        description="Rotate the prediction and actuals logs at this size (<name>.1, .2, ...).",
    )
    log_keep: int = Field(default=5, ge=1, le=1000, description="Rotated files kept per log.")
    feedback_max_items: int = Field(
        default=1000, ge=1, le=100_000, description="Actuals in one POST /feedback at most."
    )
    release: str | None = Field(
        default=None, description="The release id this process serves (set by a deploy)."
    )
    monitor_dir: Path = Field(
        default=ROOT / ".bentogate" / "monitor",
        description="Monitoring store: one DuckDB database per environment and model.",
    )
    monitor_config: Path = Field(
        default=ROOT / "monitoring" / "config.yaml", description="Monitoring checks and actions."
    )
    batch_dir: Path = Field(
        default=ROOT / ".bentogate" / "batch",
        description="Batch scoring jobs: their store (jobs.sqlite) and logs.",
    )

    @field_validator("prediction_log", "actuals_log")
    @classmethod
    def _a_file(cls, value: Literal["off"] | Path | None) -> Literal["off"] | Path | None:
        # Checked here, not in the worker: there it is a traceback and a server never ready.
        if isinstance(value, Path) and value.is_dir():
            raise ValueError(f"{value} is a folder: name a file (it is created if missing)")
        return value


class SettingsError(ValueError):
    """A malformed BENTOGATE_* variable; the message names each one, a line each."""


def get_settings(**overrides: object) -> Settings:
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise SettingsError(
            "\n".join(
                f"BENTOGATE_{'_'.join(str(p) for p in err['loc']).upper()}: {err['msg']}"
                for err in exc.errors(include_url=False)
            )
        ) from None

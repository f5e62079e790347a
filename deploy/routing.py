"""The routing file of one model in one environment: which releases run, which of them answers
requests without a version (stable), which answers when the stable one is late or gone
(previous), and the router's limits. The deploy writes it; the supervisor runs what it names and
renders it into nginx.conf (nginx.py). One file, so what serves is always readable in one place.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

ROUTING_FILE = "routing.json"
# A copy of the last routing file written whole: a hand-edited or corrupted routing.json has
# a way back (the supervisor keeps serving its last good configuration meanwhile).
GOOD_COPY = ROUTING_FILE + ".good"


class RoutingError(ValueError):
    """The routing file cannot be read as one: names the file and what is wrong."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SustainedMiss(_Strict):
    """Better wrong than late, sustained: when more than `max_share` of the stable release's
    requests over `window_s` were answered by the previous release (it missed its budget or
    failed), the supervisor sends all its traffic to the previous release (`fallback` in the
    routing file) and notifies, until an operator (`make rollback`, `make unpin`) or the next
    deploy says otherwise. max_share null: never."""

    max_share: float | None = Field(default=0.5, gt=0, le=1)
    window_s: float = Field(default=30, gt=0, le=3600)
    min_requests: int = Field(default=20, ge=1)
    every_s: float = Field(default=2, gt=0, le=60)  # how often the supervisor reads the log


class RouterLimits(_Strict):
    """Enforced by nginx before a body is buffered or a release sees the request."""

    max_body_bytes: int = Field(default=8 << 20, ge=1024, le=1 << 30)
    body_timeout_s: float = Field(default=10, gt=0, le=300)
    header_timeout_s: float = Field(default=10, gt=0, le=300)
    max_connections: int = Field(default=1024, ge=8, le=100_000)
    # Better wrong than late: the stable release has this long to answer before the previous
    # release answers instead (None: no budget, the stable release alone answers).
    budget_ms: int | None = Field(default=1000, ge=10, le=600_000)
    # A request pinned to a version, or answered by the fallback, waits at most this long.
    read_timeout_s: float = Field(default=60, gt=0, le=3600)
    retry_after_s: int = Field(default=1, ge=1, le=3600)
    # STRATEGY=shadow: the share of the stable route's requests mirrored to the candidate.
    shadow_percent: int = Field(default=100, ge=1, le=100)
    sustained_miss: SustainedMiss = SustainedMiss()


class CanaryRoute(_Strict):
    """STRATEGY=canary: `weight` percent of the requests without a version go to `release`
    (split by the `sticky_header`'s value when configured and sent, else by request id); late,
    refused or failing, and the stable release answers them."""

    release: str
    weight: int = Field(ge=0, le=100)
    sticky_header: str | None = Field(default=None, pattern=r"^[A-Za-z0-9-]{1,64}$")


class RoutedRelease(_Strict):
    id: str = Field(pattern=r"^r\d{4,}$")
    bento: str
    model_tag: str = Field(pattern=r"^[A-Za-z0-9_.-]+:[A-Za-z0-9_.-]+$")
    port: int = Field(ge=1, le=65535)
    routed: bool = False  # takes traffic (by version, or as stable/previous); else starting


class Routing(_Strict):
    environment: str
    model: str
    host: str = "127.0.0.1"
    port: int = Field(ge=1, le=65535)
    generation: int = 0
    stable: str | None = None
    previous: str | None = None
    shadow: str | None = None  # sees a copy of the stable route's traffic, never answers
    canary: CanaryRoute | None = None  # takes a share of the stable route's traffic
    # The stable release missed its budget too often: its traffic goes to the previous release
    # (set by the supervisor; cleared by the next deploy, `make rollback` or `make unpin`).
    fallback: str | None = None
    fallback_reason: str = ""
    releases: list[RoutedRelease] = []
    limits: RouterLimits = RouterLimits()

    @model_validator(mode="after")
    def _consistent(self) -> Routing:
        ids = [r.id for r in self.releases]
        if len(ids) != len(set(ids)):
            raise ValueError(f"a release is listed twice: {ids}")
        ports = [r.port for r in self.releases] + [self.port]
        if len(ports) != len(set(ports)):
            raise ValueError(f"two releases or the router share a port: {ports}")
        routed = {r.id for r in self.releases if r.routed}
        for role in ("stable", "previous"):
            rid = getattr(self, role)
            if rid is not None and rid not in routed:
                raise ValueError(
                    f"{role} {rid!r} is not a routed release (routed: {sorted(routed)})"
                )
        if self.previous is not None and self.previous == self.stable:
            raise ValueError("previous and stable are the same release")
        if self.shadow is not None and (self.shadow in routed or self.shadow not in ids):
            raise ValueError(
                f"shadow {self.shadow!r} must be a running release that takes no traffic"
            )
        if self.canary is not None and (
            self.canary.release not in routed
            or self.canary.release in (self.stable, None)
            or self.stable is None
        ):
            raise ValueError(
                f"canary {self.canary.release!r} must be a routed release beside a stable one"
            )
        if self.fallback is not None and (self.fallback != self.stable or self.previous is None):
            raise ValueError(
                f"fallback {self.fallback!r}: only the stable release, when a previous one runs"
            )
        return self

    def release(self, rid: str | None) -> RoutedRelease | None:
        return next((r for r in self.releases if r.id == rid), None)

    def routed(self) -> list[RoutedRelease]:
        return [r for r in self.releases if r.routed]

    def versions(self) -> dict[str, str]:
        """What x-model-version may name -> release id: release ids and model tags (a model tag
        served by two releases names the newer one)."""
        out: dict[str, str] = {}
        for r in sorted(self.routed(), key=lambda r: r.id):
            out[r.model_tag] = r.id
            out[r.model_tag.split(":")[1]] = r.id  # the version alone
        for r in self.routed():
            out[r.id] = r.id
        return out


def load(directory: Path) -> Routing | None:
    """The routing file, None if there is none; RoutingError if it is not a routing file."""
    path = directory / ROUTING_FILE
    if not path.is_file():
        return None
    try:
        return Routing.model_validate_json(path.read_bytes())
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "(the whole file)"
        raise RoutingError(f"{path}: {where}: {first['msg']}") from None
    except OSError as exc:
        raise RoutingError(f"{path}: cannot be read: {exc.strerror}") from None


def save(directory: Path, routing: Routing) -> None:
    """Atomically, the good copy too: the supervisor never reads half a file."""
    directory.mkdir(parents=True, exist_ok=True)
    text = json.dumps(routing.model_dump(), indent=2) + "\n"
    for name in (ROUTING_FILE, GOOD_COPY):
        tmp = directory / (name + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, directory / name)

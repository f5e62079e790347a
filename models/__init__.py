"""Model packages, one per model: ``get_spec(name)`` returns ``models/<name>/``'s SPEC."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

from models.contract import ModelSpec

MODELS_DIR = Path(__file__).resolve().parent


class UnknownModelError(LookupError):
    pass


def available() -> list[str]:
    return sorted(
        p.parent.name
        for p in MODELS_DIR.glob("*/__init__.py")
        if not p.parent.name.startswith(("_", "."))
    )


def get_spec(name: str) -> ModelSpec:
    if not re.fullmatch(r"[a-z][a-z0-9_]*", name) or name not in available():
        raise UnknownModelError(
            f"no model package named {name!r} under models/ (available: {', '.join(available())})"
        )
    spec = importlib.import_module(f"models.{name}").SPEC
    if not isinstance(spec, ModelSpec) or spec.name != name:
        raise UnknownModelError(
            f"models/{name}/__init__.py must define SPEC = ModelSpec(name={name!r}, ...)"
        )
    return spec

"""Model packages, one per model: ``get_spec(name)`` returns ``models/<name>/``'s SPEC."""

from __future__ import annotations

import importlib
import re
import traceback
from pathlib import Path

from models.contract import ModelSpec

MODELS_DIR = Path(__file__).resolve().parent


class UnknownModelError(LookupError):
    pass


class ModelPackageError(UnknownModelError):
    """The model package exists but its own code fails (import, SPEC, build_estimator)."""


def blame(exc: BaseException, package: str) -> str:
    """`models/<package>/file.py:line` of the deepest frame of `exc` inside that model package:
    where a data scientist looks first, instead of a traceback through platform code."""
    root = MODELS_DIR / package
    if isinstance(exc, SyntaxError) and exc.filename and Path(exc.filename).is_relative_to(root):
        return f"models/{package}/{Path(exc.filename).relative_to(root)}:{exc.lineno}"
    frames = [
        f
        for f in traceback.extract_tb(exc.__traceback__)
        if Path(f.filename).resolve().is_relative_to(root)
    ]
    if not frames:
        return f"models/{package}/"
    last = frames[-1]
    return f"models/{package}/{Path(last.filename).resolve().relative_to(root)}:{last.lineno}"


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
    try:
        spec = importlib.import_module(f"models.{name}").SPEC
    except Exception as exc:  # the package's own code: name its line, not a platform traceback
        raise ModelPackageError(
            f"{blame(exc, name)}: model package {name!r} cannot be imported: "
            f"{type(exc).__name__}: {exc}"
        ) from None
    if not isinstance(spec, ModelSpec) or spec.name != name:
        raise UnknownModelError(
            f"models/{name}/__init__.py must define SPEC = ModelSpec(name={name!r}, ...)"
        )
    return spec

"""YAML config files validated into pydantic models; every error names file, line and field."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

T = TypeVar("T", bound=BaseModel)


class ConfigError(ValueError):
    pass


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


def shown(path: Path) -> str:
    """A path as the user can open it: relative to the current directory when under it."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def line_of(path: Path, loc: tuple[Any, ...]) -> int | None:
    """1-based line of the setting at `loc` in a YAML file (or of its nearest parent)."""
    try:
        return _line_of(yaml.compose(path.read_text()), loc)
    except (OSError, yaml.YAMLError):
        return None


def load_yaml(path: Path, model: type[T]) -> T:
    """Validate a YAML file into `model`; every error names file, line and field."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{shown(path)}: cannot read config: {exc.strerror}") from None
    try:
        raw = yaml.safe_load(text)
        root = yaml.compose(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{shown(path)}:{mark.line + 1}" if mark else shown(path)
        raise ConfigError(f"{where}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{shown(path)}:1: expected a mapping of settings at the top level")
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        lines = []
        for err in exc.errors(include_url=False, include_input=False):
            loc = tuple(err["loc"])
            line = _line_of(root, loc)
            field = ".".join(str(p) for p in loc) or "(top level)"
            lines.append(f"{shown(path)}:{line or 1}: {field}: {err['msg']}")
        raise ConfigError("\n".join(lines)) from None


def where(path: Path, loc: tuple[Any, ...]) -> str:
    """`file:line: field` of a setting, for a problem found after loading (e.g. across files)."""
    try:
        root = yaml.compose(path.read_text())
    except (OSError, yaml.YAMLError):
        root = None
    return f"{path}:{_line_of(root, loc) or 1}: {'.'.join(str(p) for p in loc)}"

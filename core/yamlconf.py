"""YAML config files validated into pydantic models; every error names file, line and field."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

T = TypeVar("T", bound=BaseModel)


class ConfigError(ValueError):
    pass


class _DuplicateKey(yaml.YAMLError):
    def __init__(self, key: object, line: int, first: int):
        super().__init__(f"{line}: duplicate key {key!r} (first at line {first})")
        self.key, self.line, self.first = key, line, first


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a mapping key given twice (PyYAML keeps the last one).
    Keys merged in with `<<:` may still be overridden, as YAML means them to be."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        first: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                if key in first:
                    raise _DuplicateKey(key, line, first[key])
                first[key] = line
            except TypeError:  # an unhashable key: the base class says so
                pass
        return super().construct_mapping(node, deep=deep)


def _text(path: Path) -> str:
    """The file's text; ConfigError naming the line of the first byte that is not UTF-8."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{shown(path)}: cannot read config: {exc.strerror}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigError(
            f"{shown(path)}:{line}: not UTF-8 text: byte 0x{data[exc.start]:02x} "
            "(save the file as UTF-8)"
        ) from None


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
        return _line_of(yaml.compose(path.read_text(encoding="utf-8")), loc)
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None


def load_yaml(path: Path, model: type[T]) -> T:
    """Validate a YAML file into `model`; every error names file, line and field."""
    text = _text(path)
    try:
        raw = yaml.load(text, Loader=_Loader)  # a SafeLoader
        root = yaml.compose(text)
    except _DuplicateKey as exc:
        raise ConfigError(
            f"{shown(path)}:{exc.line}: duplicate key {exc.key!r} (first at line {exc.first})"
        ) from None
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
        root = yaml.compose(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        root = None
    return f"{path}:{_line_of(root, loc) or 1}: {'.'.join(str(p) for p in loc)}"

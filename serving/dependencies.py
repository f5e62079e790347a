"""Does the Bento carry what its model needs? Checked by `make build` before `bentoml build`.

A Bento installs build/requirements.txt (exported from uv.lock's main dependencies) and nothing
else, so a model that trained, served and load-tested in the full development venv can still fail
to start from its Bento. This finds every module the model needs, without loading anything:

- the model's files in its store folder: the modules a skops file's schema names (model.skops),
  or, for a package that opted in to pickles, those a pickle names (model.pkl), read from the
  opcodes (joblib's files interleave raw array bytes, skipped the way joblib reads them);
- the code the Bento ships (bentofile.yaml's include) that serves this model: the imports of
  service.py, serving/, core/, models/*.py and models/<name>/.

Each module must come from the standard library, from a project file the Bento ships, or from a
distribution listed in the requirements. Otherwise `make build` stops with exit 2, naming the
module, where it is needed and the fix (`uv add <distribution>`), before anything is built.
"""

from __future__ import annotations

import ast
import bz2
import copyreg
import gzip
import io
import lzma
import pickletools
import re
import sys
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import IO, Any

from pydantic import BaseModel, ConfigDict

from core import cli
from core.settings import ROOT
from core.yamlconf import ConfigError, load_yaml


class DependencyError(ValueError):
    """A model file or a shipped source file cannot be read: the build stops (exit 2)."""


@dataclass(frozen=True)
class Need:
    """`module` is needed at `where` (a model file, or path:line). `names`: what a from-import
    takes from it (submodules of a project package are checked too)."""

    module: str
    where: str
    names: tuple[str, ...] = ()


@dataclass(frozen=True)
class Problem:
    module: str
    where: tuple[str, ...]
    reason: str
    fix: str

    def __str__(self) -> str:
        places = ", ".join(self.where[:5]) + (
            f" and {len(self.where) - 5} more" if len(self.where) > 5 else ""
        )
        return f"- {self.module} (needed by {places}): {self.reason}\n  fix: {self.fix}"


# ---- the model's files ---------------------------------------------------------------------------


@dataclass(eq=False)
class _Global:
    module: str
    name: str


@dataclass(eq=False)
class _Object:
    """An object the pickle would build: what it calls, with what, and its BUILD state."""

    func: Any
    args: Any = ()
    state: Any = None


class _Opaque:
    """A value the scan has no need to know (a set, an array it skipped)."""


_LITERALS = {
    "INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4", "FLOAT", "BINFLOAT",
    "STRING", "BINSTRING", "SHORT_BINSTRING", "UNICODE", "SHORT_BINUNICODE", "BINUNICODE",
    "BINUNICODE8", "BINBYTES", "SHORT_BINBYTES", "BINBYTES8", "BYTEARRAY8",
}  # fmt: skip
_CONSTANTS = {"NONE": None, "NEWTRUE": True, "NEWFALSE": False, "EMPTY_TUPLE": ()}


class _Machine:
    """The unpickler's stack, memo and marks over symbolic values: nothing is imported or called.
    `joblib`: the stream is joblib's, so each NumpyArrayWrapper is followed by its array's bytes."""

    def __init__(self, stream: IO[bytes], joblib: bool, modules: set[str]) -> None:
        self.stream, self.joblib, self.modules = stream, joblib, modules
        self.stack: list[Any] = []
        self.marks: list[list[Any]] = []
        self.memo: dict[int, Any] = {}
        self.proto = 0

    def pop_mark(self) -> list[Any]:
        if not self.marks:
            raise ValueError("no MARK on the stack")
        items, self.stack = self.stack, self.marks.pop()
        return items

    def pop(self) -> Any:
        if not self.stack:
            raise ValueError("stack underflow")
        return self.stack.pop()

    def top(self) -> Any:
        if not self.stack:
            raise ValueError("stack underflow")
        return self.stack[-1]

    def global_(self, module: Any, name: Any) -> _Global:
        if not isinstance(module, str) or not isinstance(name, str):
            raise ValueError(f"a global's module and name must be strings, not {module!r}")
        if self.proto < 3:  # what the unpickler's fix_imports does with Python 2 names
            from _compat_pickle import IMPORT_MAPPING, NAME_MAPPING

            if (module, name) in NAME_MAPPING:
                module, name = NAME_MAPPING[(module, name)]
            else:
                module = IMPORT_MAPPING.get(module, module)
        self.modules.add(module)
        return _Global(module, name)

    def run(self) -> None:
        """Run the stream up to its STOP, leaving the stream just after it."""
        for op, arg, _pos in pickletools.genops(self.stream):
            self.step(op.name, arg)

    def push(self, value: Any) -> None:
        self.stack.append(value)

    def step(self, name: str, arg: Any) -> None:
        push = self.push  # not self.stack.append: popping to a MARK swaps the stack
        if name in _LITERALS:
            push(arg)
        elif name in _CONSTANTS:
            push(_CONSTANTS[name])
        elif name == "EMPTY_LIST":
            push([])
        elif name == "EMPTY_DICT":
            push({})
        elif name in ("EMPTY_SET", "NEXT_BUFFER"):
            if name == "NEXT_BUFFER":  # joblib.load passes no buffers: it would fail too
                raise ValueError("refers to out-of-band buffers")
            push(_Opaque())
        elif name == "MARK":
            self.marks.append(self.stack)
            self.stack = []
        elif name == "APPEND":
            value = self.pop()
            _extend(self.top(), [value])
        elif name == "APPENDS":
            items = self.pop_mark()
            _extend(self.top(), items)
        elif name == "LIST":
            push(self.pop_mark())
        elif name == "TUPLE":
            push(tuple(self.pop_mark()))
        elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
            n = int(name[-1])
            if len(self.stack) < n:
                raise ValueError("stack underflow")
            values = tuple(self.stack[-n:])
            del self.stack[-n:]
            push(values)
        elif name == "DICT":
            items = self.pop_mark()
            push(_dict_of(items))
        elif name == "SETITEM":
            value, key = self.pop(), self.pop()
            _update(self.top(), [key, value])
        elif name == "SETITEMS":
            items = self.pop_mark()
            _update(self.top(), items)
        elif name == "ADDITEMS":
            self.pop_mark()
            self.top()
        elif name == "FROZENSET":
            self.pop_mark()
            push(_Opaque())
        elif name == "POP":
            if self.stack:
                self.stack.pop()
            else:
                self.pop_mark()
        elif name == "POP_MARK":
            self.pop_mark()
        elif name == "DUP":
            push(self.top())
        elif name in ("GET", "BINGET", "LONG_BINGET"):
            if arg not in self.memo:
                raise ValueError(f"memo key {arg} is not defined")
            push(self.memo[arg])
        elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
            self.memo[arg] = self.top()
        elif name == "MEMOIZE":
            self.memo[len(self.memo)] = self.top()
        elif name == "GLOBAL":
            push(self.global_(*arg.split(" ", 1)))
        elif name == "STACK_GLOBAL":
            attr, module = self.pop(), self.pop()
            push(self.global_(module, attr))
        elif name == "INST":
            args = self.pop_mark()
            push(_Object(self.global_(*arg.split(" ", 1)), tuple(args)))
        elif name in ("EXT1", "EXT2", "EXT4"):
            # copyreg's registry of extension codes is private: there at run time, not in its stubs.
            inverted = copyreg._inverted_registry  # type: ignore[attr-defined]
            if arg not in inverted:
                raise ValueError(f"extension code {arg} is not registered")
            push(self.global_(*inverted[arg]))
        elif name == "OBJ":
            items = self.pop_mark()
            if not items:
                raise ValueError("OBJ without a class")
            push(_Object(items[0], tuple(items[1:])))
        elif name in ("REDUCE", "NEWOBJ"):
            args = self.pop()
            push(_Object(self.pop(), args))
        elif name == "NEWOBJ_EX":
            kwargs, args = self.pop(), self.pop()
            push(_Object(self.pop(), (args, kwargs)))
        elif name == "BUILD":
            state = self.pop()
            obj = self.top()
            if isinstance(obj, _Object):
                obj.state = state
                if self.joblib and _is_array_wrapper(obj):
                    self.stack[-1] = _Opaque()
                    self.skip_array(obj.state)
        elif name in ("PERSID", "BINPERSID"):  # joblib.load has no persistent_load: it would fail
            raise ValueError("refers to a persistent id")
        elif name == "PROTO":
            self.proto = arg
        elif name not in ("FRAME", "READONLY_BUFFER", "STOP"):
            raise ValueError(f"opcode {name} is not handled")

    def skip_array(self, state: Any) -> None:
        """Step over the array data joblib writes right after a NumpyArrayWrapper, as its
        NumpyArrayWrapper.read_array reads it: a nested pickle for object arrays; otherwise an
        alignment padding (joblib >= 1.2: one length byte, then that many bytes) and the raw
        items."""
        if not isinstance(state, dict) or "shape" not in state or "dtype" not in state:
            raise ValueError("a NumpyArrayWrapper without shape and dtype")
        itemsize, hasobject = _dtype_layout(state["dtype"])
        if hasobject:
            _Machine(self.stream, joblib=False, modules=self.modules).run()
            return
        count = 1
        for n in _tuple(state["shape"]):
            if not isinstance(n, int) or n < 0:
                raise ValueError(f"array shape {state['shape']!r} is not a tuple of sizes")
            count *= n
        if state.get("numpy_array_alignment_bytes") is not None:
            padding = self.skip(1)[0]  # one byte: how many padding bytes follow it
            self.skip(padding)
        self.skip(count * itemsize)

    def skip(self, n: int) -> bytes:
        """Read past n bytes (returns the last chunk read); truncated data is an error."""
        chunk = b""
        while n > 0:
            chunk = self.stream.read(min(n, 1 << 20))
            if not chunk:
                raise ValueError("the file ends inside an array's data")
            n -= len(chunk)
        return chunk


def _extend(target: Any, items: list[Any]) -> None:
    """APPEND(S): to a list, or to an object the pickle built (a list subclass, a deque)."""
    if isinstance(target, list):
        target.extend(items)
    elif not isinstance(target, _Object):
        raise ValueError(f"APPEND to a {type(target).__name__}")


def _update(target: Any, items: list[Any]) -> None:
    """SETITEM(S): into a dict, or into an object the pickle built (a dict subclass)."""
    pairs = _dict_of(items)
    if isinstance(target, dict):
        target.update(pairs)
    elif not isinstance(target, _Object):
        raise ValueError(f"SETITEM on a {type(target).__name__}")


def _key(key: Any) -> Any:
    if isinstance(key, list | dict):
        raise ValueError("an unhashable dict key")
    return key


def _dict_of(items: list[Any]) -> dict[Any, Any]:
    if len(items) % 2:
        raise ValueError("an odd number of items for a dict")
    return {_key(items[i]): items[i + 1] for i in range(0, len(items), 2)}


def _tuple(value: Any) -> tuple[Any, ...]:
    if not isinstance(value, tuple):
        raise ValueError(f"expected a tuple, found {type(value).__name__}")
    return value


def _is_array_wrapper(obj: _Object) -> bool:
    cls = obj.func
    # Through copyreg (__newobj__, or _reconstructor for protocols 0-1) the class is the first arg.
    if (
        isinstance(cls, _Global)
        and cls.module == "copyreg"
        and isinstance(obj.args, tuple)
        and obj.args
    ):
        cls = obj.args[0]
    return (
        isinstance(cls, _Global)
        and cls.name == "NumpyArrayWrapper"
        and cls.module.endswith("numpy_pickle")
    )


def _dtype_layout(dtype: Any) -> tuple[int, bool]:
    """Item size and whether it holds Python objects, from a pickled numpy.dtype: numpy reduces a
    dtype to dtype(typestr, False, True) with state (version, endian, subarray, names, fields,
    elsize, alignment, flags[, metadata]); elsize is -1 unless flexible; flags bit 0 = objects."""
    if not (
        isinstance(dtype, _Object)
        and isinstance(dtype.func, _Global)
        and dtype.func.name == "dtype"
        and dtype.func.module.split(".")[0] == "numpy"
        and isinstance(dtype.args, tuple)
        and dtype.args
        and isinstance(dtype.args[0], str)
    ):
        raise ValueError("an array whose dtype is not a pickled numpy.dtype")
    typestr, state = dtype.args[0], dtype.state
    elsize, flags = -1, 0
    if isinstance(state, tuple) and len(state) >= 8:
        elsize, flags = state[5], state[7]
    if not isinstance(elsize, int) or not isinstance(flags, int):
        raise ValueError(f"dtype {typestr!r} has an unreadable state")
    if flags & 1 or typestr.startswith("O"):
        return 0, True
    if elsize > 0:
        return elsize, False
    size = re.fullmatch(r"[a-zA-Z?]+(\d+)", typestr)
    if size is None:
        raise ValueError(f"cannot work out the item size of dtype {typestr!r}")
    return int(size.group(1)), False


# joblib.load recognises a compressed file by its first bytes (joblib/compressor.py).
_DECOMPRESS = (
    (b"\x78", zlib.decompress),
    (b"\x1f\x8b", gzip.decompress),
    (b"BZ", bz2.decompress),
    (b"\xfd\x37\x7a\x58\x5a", lzma.decompress),
    (b"\x5d\x00", lzma.decompress),
)
_UNSUPPORTED = ((b"\x04\x22\x4d\x18", "lz4-compressed"), (b"ZF", "from joblib < 0.9.3"))


def pickle_modules(path: Path) -> set[str]:
    """Every module a joblib (or plain) pickle file names, without importing or calling anything.
    Raises DependencyError naming the file and byte for a file joblib.load could not read."""
    with path.open("rb") as raw:
        head = raw.read(5)
        raw.seek(0)
        for prefix, what in _UNSUPPORTED:
            if head.startswith(prefix):
                raise DependencyError(f"{path.name}: cannot scan a joblib file {what}")
        stream: IO[bytes] = raw
        for prefix, decompress in _DECOMPRESS:
            if head.startswith(prefix):
                try:
                    stream = io.BytesIO(decompress(raw.read()))
                except (OSError, EOFError, ValueError, zlib.error, lzma.LZMAError) as exc:
                    raise DependencyError(f"{path.name}: cannot decompress: {exc}") from None
                break
        modules: set[str] = set()
        try:
            _Machine(stream, joblib=True, modules=modules).run()
        except (ValueError, TypeError) as exc:
            raise DependencyError(
                f"{path.name}: byte {stream.tell()}: not a pickle joblib could load: {exc}"
            ) from None
        # joblib writes nothing after the pickle: trailing bytes mean the scan went astray.
        if stream.read(1):
            raise DependencyError(
                f"{path.name}: byte {stream.tell() - 1}: data follows the end of the pickle, "
                "which joblib never writes"
            )
    return modules


def _no_modules(path: Path) -> set[str]:
    return set()


def skops_modules(path: Path) -> set[str]:
    """Every module a skops file's schema names (each object it would build says its
    `__module__`), read from its schema.json without loading anything; and skops itself."""
    import json
    import zipfile

    def walk(node: Any) -> Iterable[str]:
        if isinstance(node, dict):
            if isinstance(node.get("__module__"), str):
                yield node["__module__"]
            for value in node.values():
                yield from walk(value)
        elif isinstance(node, list):
            for value in node:
                yield from walk(value)

    try:
        with zipfile.ZipFile(path) as archive:
            schema = json.loads(archive.read("schema.json"))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        raise DependencyError(f"{path.name}: not a skops file: {exc}") from None
    return {"skops", *walk(schema)}


# How to read each kind of file in a model's store folder. ONNX names no Python module (the runtime
# that reads it is imported by the serving code, which the code side checks). A new format needs
# its reader here: an unknown file stops the build rather than pass unchecked.
READERS = {
    ".pkl": pickle_modules,
    ".pickle": pickle_modules,
    ".joblib": pickle_modules,
    ".onnx": _no_modules,
    ".skops": skops_modules,
    # A compiled predictor: numeric arrays and JSON (models/forest.py), read with
    # allow_pickle=False, so it names no module; the code that reads it is checked as code.
    ".npz": _no_modules,
    # The reference sample (validation rows and predictions): data that pyarrow reads for the load
    # test and monitoring, never unpickled, so it names no module.
    ".parquet": _no_modules,
}
STORE_FILES = {"model.yaml"}  # BentoML's own record of the model


def model_needs(model_dir: Path) -> list[Need]:
    if not model_dir.is_dir():
        raise DependencyError(f"{model_dir}: no such model folder")
    needs = []
    for path in sorted(p for p in model_dir.iterdir() if p.is_file()):
        if path.name in STORE_FILES:
            continue
        reader = READERS.get(path.suffix)
        if reader is None:
            raise DependencyError(
                f"{path.name}: no reader for {path.suffix or 'extensionless'} model files in "
                "serving/dependencies.py READERS, so what it needs cannot be checked"
            )
        needs += [Need(m, path.name) for m in sorted(reader(path))]
    return needs


# ---- the code the Bento ships --------------------------------------------------------------------


class _BentoFile(BaseModel):
    model_config = ConfigDict(extra="allow")
    include: list[str]


def shipped_files(root: Path) -> set[Path]:
    """The project files the Bento carries: bentofile.yaml's include patterns."""
    try:
        spec = load_yaml(root / "bentofile.yaml", _BentoFile)
    except ConfigError as exc:
        raise DependencyError(str(exc)) from None
    return {p for pattern in spec.include for p in root.glob(pattern) if p.is_file()}


def _catches_import_error(handler: ast.ExceptHandler) -> bool:
    types = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
    names = {"ImportError", "ModuleNotFoundError", "Exception", "BaseException"}
    return handler.type is None or any(isinstance(t, ast.Name) and t.id in names for t in types)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


class _Imports(ast.NodeVisitor):
    """Absolute and relative imports that run: not under `if TYPE_CHECKING:`, and not optional
    ones (in a `try:` whose handler catches the ImportError)."""

    def __init__(self, package: list[str], where: str) -> None:
        self.package, self.where = package, where
        self.needs: list[Need] = []

    def visit_If(self, node: ast.If) -> None:
        if _is_type_checking(node.test):
            for child in node.orelse:
                self.visit(child)
        else:
            self.generic_visit(node)

    def visit_Try(self, node: ast.Try | ast.TryStar) -> None:
        optional = any(_catches_import_error(h) for h in node.handlers)
        for child in [*([] if optional else node.body), *node.handlers]:
            self.visit(child)
        for child in [*node.orelse, *node.finalbody]:
            self.visit(child)

    visit_TryStar = visit_Try

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self.needs.append(Need(alias.name, f"{self.where}:{node.lineno}"))

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        where = f"{self.where}:{node.lineno}"
        module = node.module or ""
        if node.level:
            if node.level - 1 > len(self.package) - 1:
                raise DependencyError(f"{where}: relative import beyond the top-level package")
            base = self.package[: len(self.package) - (node.level - 1)]
            module = ".".join([*base, module] if module else base)
        self.needs.append(Need(module, where, tuple(a.name for a in node.names)))


def code_needs(path: Path, root: Path) -> list[Need]:
    rel = path.relative_to(root)
    try:
        tree = ast.parse(path.read_bytes(), filename=str(rel))
    except SyntaxError as exc:
        raise DependencyError(f"{rel}:{exc.lineno}: cannot parse: {exc.msg}") from None
    except ValueError as exc:  # e.g. a null byte
        raise DependencyError(f"{rel}: cannot parse: {exc}") from None
    package = list(rel.parent.parts)
    visitor = _Imports(package, str(rel))
    visitor.visit(tree)
    return visitor.needs


def serving_code(root: Path, model_name: str, shipped: Iterable[Path]) -> list[Path]:
    """The shipped Python files that serve `model_name`: every model package ships, but only the
    served one is imported."""
    packages = root / "models"
    return sorted(
        p
        for p in shipped
        if p.suffix == ".py" and not (p.parent.parent == packages and p.parent.name != model_name)
    )


# ---- where each module comes from ----------------------------------------------------------------


def normalize(name: str) -> str:
    """PEP 503 normalized distribution name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_requirements(text: str) -> set[str]:
    """Normalized distribution names of a requirements file (`uv export` output)."""
    names = set()
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", "-")):
            continue
        match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", line)
        if match:
            names.add(normalize(match.group(0)))
    return names


@cache
def installed_distributions() -> Mapping[str, list[str]]:
    """Top-level import name -> the installed distributions that provide it."""
    return metadata.packages_distributions()


def _providers(module: str, candidates: list[str]) -> list[str]:
    """For a namespace package several distributions share (opentelemetry, zope), those whose
    files hold `module` itself."""
    if len(candidates) < 2:
        return candidates
    path = module.replace(".", "/")
    holders = [
        d
        for d in candidates
        if any(
            str(f).startswith(f"{path}/") or str(f) == f"{path}.py"
            for f in (metadata.distribution(d).files or [])
        )
    ]
    return holders or candidates


def _project_files(root: Path, module: str) -> list[Path]:
    base = root.joinpath(*module.split("."))
    return [p for p in (base.with_suffix(".py"), base / "__init__.py") if p.is_file()]


def _is_project(root: Path, top: str) -> bool:
    return (root / top / "__init__.py").is_file() or (root / f"{top}.py").is_file()


def unmet(
    needs: Iterable[Need],
    requirements: set[str],
    root: Path,
    shipped: set[Path],
    distributions: Mapping[str, list[str]],
    requirements_name: str = "build/requirements.txt",
) -> list[Problem]:
    """The needs the Bento would not meet, one Problem per module (or distribution) with every
    place that needs it. Fine: the standard library, project files the Bento ships, and modules
    of a distribution listed in `requirements` (normalized names)."""
    found: dict[str, tuple[str, str, list[str]]] = {}

    def problem(key: str, where: str, reason: str, fix: str) -> None:
        found.setdefault(key, (reason, fix, []))[2].append(where)

    for need in needs:
        top = need.module.split(".")[0]
        if top in sys.stdlib_module_names:
            continue
        if top == "__main__":
            problem(
                need.module,
                need.where,
                "defined in the script that trained the model, which the Bento does not carry",
                "define it in the model package (models/<name>/), train and register again",
            )
        elif _is_project(root, top):
            if not _project_files(root, need.module):
                problem(need.module, need.where, "no such module in the project", "restore it")
                continue
            # The most specific file first: `from pkg import mod` needs pkg/mod.py.
            modules = [*(f"{need.module}.{n}" for n in need.names), need.module]
            unshipped = [f for m in modules for f in _project_files(root, m) if f not in shipped]
            if unshipped:
                rel = unshipped[0].relative_to(root)
                parts = rel.parent.parts if rel.name == "__init__.py" else rel.with_suffix("").parts
                problem(
                    ".".join(parts),
                    need.where,
                    f"{rel} is not among the files the Bento ships (bentofile.yaml include; "
                    "the Bento carries no training code)",
                    "move what serving needs into models/, serving/ or core/",
                )
        else:
            candidates = _providers(need.module, distributions.get(top, []))
            if not candidates:
                problem(
                    top,
                    need.where,
                    "no installed distribution provides it, so the Bento cannot install it",
                    "`uv add <the distribution that provides it>`, commit pyproject.toml and "
                    "uv.lock, and build again",
                )
            elif not any(normalize(d) in requirements for d in candidates):
                dist = " or ".join(normalize(d) for d in candidates)
                problem(
                    top,
                    need.where,
                    f"its distribution {dist} is not in {requirements_name} (uv.lock's main "
                    "dependencies: what the Bento installs)",
                    f"`uv add {normalize(candidates[0])}`, commit pyproject.toml and uv.lock, "
                    "and build again",
                )
    return [
        Problem(key, tuple(dict.fromkeys(places)), reason, fix)
        for key, (reason, fix, places) in found.items()
    ]


@dataclass
class Result:
    problems: list[Problem]
    needs: list[Need] = field(default_factory=list)
    files: list[str] = field(default_factory=list)


def check(
    root: Path,
    model_name: str,
    model_dir: Path,
    requirements_path: Path,
    distributions: Mapping[str, list[str]] | None = None,
) -> Result:
    """What the Bento of `model_name` (files in `model_dir`) needs that `requirements_path` and the
    shipped project files do not provide. Raises DependencyError for an unreadable input."""
    try:
        requirements = read_requirements(requirements_path.read_text())
    except OSError as exc:
        raise DependencyError(f"cannot read {requirements_path}: {exc.strerror}") from None
    shipped = shipped_files(root)
    code = serving_code(root, model_name, shipped)
    needs = model_needs(model_dir)
    for path in code:
        needs += code_needs(path, root)
    try:
        req_name = str(requirements_path.relative_to(root))
    except ValueError:
        req_name = str(requirements_path)
    problems = unmet(
        needs,
        requirements,
        root,
        shipped,
        installed_distributions() if distributions is None else distributions,
        req_name,
    )
    files = [p.name for p in model_dir.iterdir() if p.name not in STORE_FILES]
    return Result(problems, needs, sorted(files) + [str(p.relative_to(root)) for p in code])


# ---- the command `make build` runs ---------------------------------------------------------------


def _model_dir(tag: str | None) -> tuple[str, Path]:
    """The model `bentoml build` will bundle, as service.py resolves it outside a Bento:
    BENTOGATE_MODEL_TAG, else the production model of BENTOGATE_MODEL."""
    import bentoml

    from core import registry
    from core.settings import get_settings

    settings = get_settings()
    tag = tag or settings.model_tag
    if tag is None:
        try:
            prod = registry.production(settings.model)
        except registry.RegistryError as exc:
            raise DependencyError(str(exc)) from None
        if prod is None:
            raise DependencyError(f"no production model of {settings.model!r} in the store")
        return str(prod.tag), Path(prod.path)
    try:
        model = bentoml.models.get(tag)
    except bentoml.exceptions.NotFound:
        raise DependencyError(f"model {tag!r} is not in the store") from None
    return str(model.tag), Path(model.path)


@cli.refuses_bad_settings
def main(argv: list[str] | None = None) -> int:
    parser = cli.ArgumentParser(
        prog="python -m serving.dependencies",
        description="Check that a Bento would carry every module its model needs.",
    )
    parser.add_argument("requirements", type=Path, help="the Bento's requirements file")
    parser.add_argument("--tag", help="model tag (default: as service.py resolves it)")
    parser.add_argument(
        "--model-dir", type=Path, help="the model's store folder (instead of a tag)"
    )
    parser.add_argument("--model", help="model package name, with --model-dir")
    parser.add_argument("--root", type=Path, default=ROOT, help="the project (default: this one)")
    args = parser.parse_args(argv)
    try:
        if args.model_dir is not None:
            if not args.model:
                parser.error("--model-dir needs --model")
            tag, model_dir = args.model, args.model_dir
        else:
            tag, model_dir = _model_dir(args.tag)
        result = check(args.root, tag.split(":")[0], model_dir, args.requirements)
    except DependencyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if result.problems:
        print(
            f"error: the Bento of {tag} would not carry what it needs; nothing was built:\n"
            + "\n".join(map(str, result.problems)),
            file=sys.stderr,
        )
        return 2
    libraries = sorted(
        {
            top
            for top in (n.module.split(".")[0] for n in result.needs)
            if top not in sys.stdlib_module_names and not _is_project(args.root, top)
        }
    )
    print(
        f"{tag}: its {len(result.files)} model and source files need "
        f"{', '.join(libraries) or 'no library'}: all in {args.requirements}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

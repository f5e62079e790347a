"""One JSON shape for every error the API answers, in words a product engineer reads.

    {"error": "records[0].class: expected an integer from 0 to 99999, got a string '1003'",
     "field": "records[0].class",
     "expected": "an integer from 0 to 99999",
     "errors": [{"field": "records[0].class", "error": "expected ..., got ...", "expected": "..."}]}

`error` is always there (BentoML's own bodies have it too); `field` and `expected` are those of the
first problem, or null when no field is at fault (429, 500); `errors` lists every problem (up to
MAX_LISTED). No internal class names, no pydantic URLs, no dump of a long category list.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import types
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, RootModel, Tag, ValidationError

MAX_LISTED = 10
SHOWN_CATEGORIES = 3


def problem(error: str, field: str | None = None, expected: str | None = None) -> dict[str, Any]:
    return {"field": field, "error": error, "expected": expected}


def body(problems: Sequence[dict[str, Any]]) -> bytes:
    """The response body for one or more problems (at least one)."""
    first = problems[0]
    summary = f"{first['field']}: {first['error']}" if first["field"] else first["error"]
    if len(problems) > MAX_LISTED:
        summary += f" (and {len(problems) - 1} more; errors lists the first {MAX_LISTED})"
    elif len(problems) > 1:
        summary += f" (and {len(problems) - 1} more, listed in errors)"
    return json.dumps(
        {
            "error": summary,
            "field": first["field"],
            "expected": first["expected"],
            "errors": list(problems[:MAX_LISTED]),
        }
    ).encode()


# ---- pydantic validation errors -> problems --------------------------------------------------


def field_name(loc: Sequence[str | int]) -> str:
    """`records[0].class` for the location ("records", 0, "class"); `body` for the whole body."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else f".{part}" if out else str(part)
    return out or "body"


def value(v: Any) -> str:
    """What the client sent, with its JSON type: "a string '5'", "an integer 5", "null"."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return f"a boolean {json.dumps(v)}"
    if isinstance(v, int):
        if v.bit_length() > 128:  # named by its size: echoed whole it would fill the message
            return f"an integer of about {int(v.bit_length() * math.log10(2)) + 1} digits"
        return f"an integer {v}"
    if isinstance(v, float):
        return f"a number {v!r}" if math.isfinite(v) else f"a number {json.dumps(v)}"
    if isinstance(v, str | bytes):
        text = v if isinstance(v, str) else v.decode("utf-8", "replace")
        return f"a string {text[:40]!r}" + ("..." if len(text) > 40 else "")
    if isinstance(v, list | tuple):
        return f"a list of {len(v)} item" + ("" if len(v) == 1 else "s")
    if isinstance(v, dict):
        return "an object"
    return type(v).__name__


def _meta(metadata: Sequence[Any], attr: str) -> Any:
    """A constraint of a field (annotated_types' Ge, Le, MinLen, MaxLen carry one attribute)."""
    return next((getattr(m, attr) for m in metadata if getattr(m, attr, None) is not None), None)


def _bound(b: Any) -> str | None:
    """A bound as a person writes it: 0, not 0.0. typing caches Annotated[float, Ge(0)] and
    Annotated[float, Ge(0.0)] as one, so which of the two a field holds depends on what ran first."""
    if b is None:
        return None
    if isinstance(b, float) and b.is_integer() and abs(b) < 1e15:
        return str(int(b))
    return str(b)


def _bounds(metadata: Sequence[Any]) -> str:
    lo, hi = (_bound(_meta(metadata, k)) for k in ("ge", "le"))
    if lo is not None and hi is not None:
        return f" from {lo} to {hi}"
    if lo is not None:
        return f" of at least {lo}"
    return f" of at most {hi}" if hi is not None else ""


def _categories(choices: Sequence[Any]) -> str:
    shown = ", ".join(repr(c) if isinstance(c, str) else str(c) for c in choices[:SHOWN_CATEGORIES])
    if len(choices) <= SHOWN_CATEGORIES:
        return f"one of {shown}"
    return (
        f"one of the known categories ({len(choices)} values, e.g. {shown} ...; "
        "all are listed in /docs.json)"
    )


def expected(annotation: Any, metadata: Sequence[Any] = (), name: str = "items") -> str:
    """A field's type in words: "an integer from 0 to 99999", "true or false", ..."""
    origin = get_origin(annotation)
    if origin is Annotated:
        inner, *extra = get_args(annotation)
        return expected(inner, [*metadata, *extra], name)
    if origin is Literal:
        return _categories(get_args(annotation))
    if origin in (Union, types.UnionType):
        args = get_args(annotation)
        # A nullable field says so: "a number of at least 0 or null".
        words = [expected(a) for a in args if a is not type(None)]
        return " or ".join([*words, "null"] if type(None) in args else words)
    if origin is list:
        lo, hi = _meta(metadata, "min_length"), _meta(metadata, "max_length")
        if lo is not None and hi is not None:
            return f"a list of {lo} to {hi} {name}"
        return f"a list of {name}"
    if annotation is bool:
        return "true or false"
    if annotation is int:
        return "an integer" + _bounds(metadata)
    if annotation is float:
        return "a number" + _bounds(metadata)
    if annotation is str:
        lo, hi = _meta(metadata, "min_length"), _meta(metadata, "max_length")
        return f"a string of {lo} to {hi} characters" if lo and hi else "a string"
    if annotation is dt.datetime:
        return 'a date and time as "YYYY-MM-DDTHH:MM:SS[.fff][+HH:MM]" (no offset: UTC)'
    if annotation is dt.date:
        return 'a date as "YYYY-MM-DD"' + _bounds(metadata)
    if isinstance(annotation, type) and issubclass(annotation, RootModel):
        return expected(annotation.model_fields["root"].annotation, metadata, name)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        names = list(annotation.model_fields)
        if len(names) > 12:
            return f"an object with {len(names)} fields (see /docs.json)"
        return f"an object with the field{'s' if len(names) > 1 else ''} {', '.join(names)}"
    return "a value of the documented type (see /docs.json)"


def _resolve(model: type[BaseModel], loc: Sequence[str | int]) -> tuple[Any, Sequence[Any], str]:
    """(annotation, metadata, name) of the field at `loc`; (None, (), "") if there is none."""
    annotation: Any = model
    metadata: Sequence[Any] = ()
    name = "body"
    for part in loc:
        while get_origin(annotation) is Annotated:
            annotation = get_args(annotation)[0]
        if isinstance(part, int) and get_origin(annotation) is list:
            annotation, metadata = get_args(annotation)[0], ()
        elif isinstance(annotation, type) and issubclass(annotation, BaseModel):
            info = annotation.model_fields.get(str(part))
            if info is None:
                return None, (), ""
            annotation, metadata, name = info.annotation, info.metadata, str(part)
        else:
            return None, (), ""
    return annotation, metadata, name


def _parent_fields(model: type[BaseModel], loc: Sequence[str | int]) -> list[str]:
    annotation, _, _ = _resolve(model, loc[:-1])
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return list(annotation.model_fields)
    return []


def _quoted_number_hint(annotation: Any, sent: Any) -> str:
    """An integer category sent as a string: say how to send it."""
    quoted = isinstance(sent, str) and sent.isascii() and sent.strip().isdigit()
    if quoted and get_origin(annotation) is Literal and int(sent) in get_args(annotation):
        return f": send it as a number, {int(sent)}, without quotes"
    return ""


def _member(model: type[BaseModel], loc: Sequence[str | int]) -> tuple[Any, Sequence[str | int]]:
    """A body of several shapes (a RootModel over a tagged union): pydantic puts the tag of the
    shape it chose first in `loc`; the problem is that shape's, at the rest of `loc`."""
    if not (issubclass(model, RootModel) and loc and isinstance(loc[0], str)):
        return model, loc
    annotation = model.model_fields["root"].annotation
    while get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    for option in (
        get_args(annotation) if get_origin(annotation) in (Union, types.UnionType) else ()
    ):
        if get_origin(option) is Annotated:
            inner, *extra = get_args(option)
            if any(isinstance(m, Tag) and m.tag == loc[0] for m in extra):
                return inner, loc[1:]
    return model, loc


def from_validation(exc: ValidationError, body_model: type[BaseModel]) -> list[dict[str, Any]]:
    """The problems of a request body that failed validation against `body_model`."""
    problems = []
    for err in exc.errors(include_url=False):
        kind, sent = err["type"], err.get("input")
        model, loc = _member(body_model, err["loc"])
        field = field_name(loc)
        annotation, metadata, name = _resolve(model, loc)
        want = expected(annotation, metadata, name) if annotation is not None else None
        if not loc and want is not None:
            want = want.replace("an object", "a JSON object", 1)
        if kind == "json_invalid":
            reason = err.get("ctx", {}).get("error", "")
            want = expected(model).replace("an object", "a JSON object", 1)
            problems.append(problem(f"not valid JSON: {reason}", "body", want))
        elif kind == "missing":
            problems.append(problem(f"missing: expected {want}", field, want))
        elif kind == "extra_forbidden":
            known = _parent_fields(model, loc)
            only = f"only {', '.join(known)}" if known else "only the documented fields"
            problems.append(problem(f"not a known field: expected {only}", field, only))
        elif want is not None:
            reason = err.get("ctx", {}).get("error")
            detail = f" ({reason})" if isinstance(reason, str) and kind.startswith("date") else ""
            hint = _quoted_number_hint(annotation, sent)
            problems.append(
                problem(f"expected {want}, got {value(sent)}{detail}{hint}", field, want)
            )
        else:  # a location the model does not describe: pydantic's own words, without the input
            problems.append(problem(err["msg"], field))
    return problems or [problem("the request body is not valid", "body")]


def from_bentoml_detail(detail: Any) -> list[dict[str, Any]]:
    """BentoML's 400 body ({"error": ..., "detail": [pydantic errors without input]}), reshaped:
    a fallback, for a request that passed our validation and not BentoML's."""
    if not isinstance(detail, list):
        return [problem("the request is not valid", "body")]
    out = []
    for err in detail:
        if isinstance(err, dict):
            msg = str(err.get("msg", "not valid"))
            if err.get("type") == "literal_error":  # its message lists every category
                msg = "not one of the known categories (all are listed in /docs.json)"
            out.append(problem(msg, field_name(err.get("loc", ()))))
    return out or [problem("the request is not valid", "body")]


# ---- the OpenAPI document ---------------------------------------------------------------------

PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "type": "object",
    "required": ["field", "error", "expected"],
    "properties": {
        "field": {
            "type": "string",
            "nullable": True,
            "description": "Where: a body path like records[0].class, a header, or null.",
        },
        "error": {"type": "string", "description": "What is wrong, in one sentence."},
        "expected": {
            "type": "string",
            "nullable": True,
            "description": "What would be accepted there, in words.",
        },
    },
}
ERROR_SCHEMA: dict[str, Any] = {
    "title": "Error",
    "type": "object",
    "description": "Every 4xx and 5xx answer of the API has this shape.",
    "required": ["error", "field", "expected", "errors"],
    "properties": {
        "error": {"type": "string", "description": "The first problem, and how many more."},
        "field": PROBLEM_SCHEMA["properties"]["field"],
        "expected": PROBLEM_SCHEMA["properties"]["expected"],
        "errors": {
            "type": "array",
            "items": {"$ref": "#/components/schemas/Problem"},
            "description": f"Every problem found (the first {MAX_LISTED}).",
        },
    },
    "example": json.loads(
        body(
            [
                problem(
                    "expected an integer from 0 to 99999, got a string '1003'",
                    "records[0].class",
                    "an integer from 0 to 99999",
                )
            ]
        )
    ),
}
STATUSES = {
    400: "The body is not valid: each problem names its field and what was expected.",
    404: "No such endpoint.",
    405: "Method not allowed on this endpoint.",
    413: "The body is over the size limit.",
    415: "Content-Type is not application/json.",
    429: "Too many requests in flight: retry after the Retry-After header's seconds.",
    500: "Unexpected server error: the server log has the details.",
}
_BENTOML_ERROR_SCHEMAS = ("InvalidArgument", "NotFound", "InternalServerError")


def document(spec: dict[str, Any], success: Mapping[str, int] | None = None) -> dict[str, Any]:
    """BentoML's OpenAPI document with its error responses replaced by ours, on every POST.
    `success`: the status of a route whose success is not 200 (e.g. {"/feedback": 202})."""
    ref = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    for path, item in spec.get("paths", {}).items():
        post = item.get("post")
        if not isinstance(post, dict):
            continue
        responses = {k: v for k, v in post.get("responses", {}).items() if int(k) < 400}
        status = (success or {}).get(path)
        if status is not None and "200" in responses:
            responses[str(status)] = responses.pop("200")
            responses[str(status)]["description"] = HTTPStatus(status).phrase
        for status, description in STATUSES.items():
            responses[str(status)] = {"description": description, "content": ref}
        post["responses"] = responses
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    if "InvalidArgument" not in json.dumps(spec.get("paths", {})):
        for name in _BENTOML_ERROR_SCHEMAS:
            schemas.pop(name, None)
    schemas["Error"], schemas["Problem"] = ERROR_SCHEMA, PROBLEM_SCHEMA
    return spec

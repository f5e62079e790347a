"""ASGI middleware in front of the API: turns away bad requests before BentoML parses them, and
gives every error the one JSON shape of serving/errors.py.

POST: a non-JSON content type gets 415 (so a pickle body is never deserialized and a multipart body
never reaches BentoML's form parser), a body over the limit 413, more requests in flight than
`max_concurrency` 429 with Retry-After. A body that fails the API's request model (the same
pydantic model BentoML validates with) gets 400 here, naming each field and what was expected:
BentoML's own 400 names an internal class, dumps long category lists and logs a traceback per
request. Validating twice costs a few microseconds per record (README, "Errors").

Other answers are rewritten into the same shape when they are errors without it: Starlette's
plain-text 404 and 405, BentoML's 500, and its 400 should a body pass our check and fail its own.
The OpenAPI document (/docs.json) documents that shape for each status.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any

from pydantic import BaseModel, ValidationError

from serving import errors

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

JSON_TYPES = {b"application/json"}
# Probes and metrics: never limited, never rewritten (a 503 from /readyz is for Kubernetes).
INFRA_PATHS = frozenset({"/livez", "/readyz", "/healthz", "/metrics"})
RETRY_AFTER_S = 1


async def _reply(
    send: Send,
    status: int,
    problems: list[dict[str, Any]],
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    body = errors.body(problems)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class RequestGuard:
    def __init__(
        self,
        app: Callable[..., Awaitable[None]],
        max_body_bytes: int = 1 << 20,
        schemas: Mapping[str, type[BaseModel]] | None = None,
        max_concurrency: int | None = None,
        success: Mapping[str, int] | None = None,
    ) -> None:
        """`schemas`: the request model of each POST route, e.g. {"/predict": PredictRequest}.
        `max_concurrency`: requests in flight before 429 (None: no limit here).
        `success`: a route's success status when not 200, for the OpenAPI document."""
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.schemas = dict(schemas or {})
        self.max_concurrency = max_concurrency
        self.in_flight = 0
        self.success = dict(success or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = scope.get("method")
        # Probes and scrapes (GET) pass untouched; a HEAD answer has no body to reshape.
        if (
            scope["type"] != "http"
            or method == "HEAD"
            or (method == "GET" and scope["path"] in INFRA_PATHS)
        ):
            await self.app(scope, receive, send)
            return
        send = _Reshaper(send, scope, self.schemas, self.success)
        if scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        if self.max_concurrency is not None and self.in_flight >= self.max_concurrency:
            await _reply(
                send,
                429,
                [
                    errors.problem(
                        f"too many requests in flight (limit {self.max_concurrency}): "
                        f"retry after {RETRY_AFTER_S} s"
                    )
                ],
                [(b"retry-after", str(RETRY_AFTER_S).encode())],
            )
            return
        self.in_flight += 1
        try:
            await self._post(scope, receive, send)
        finally:
            self.in_flight -= 1

    async def _post(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = dict(scope["headers"])
        ctype = headers.get(b"content-type")
        if ctype is not None and ctype.split(b";")[0].strip().lower() not in JSON_TYPES:
            shown = ctype.decode("latin-1")[:80]
            problem = errors.problem(
                f"unsupported media type {shown!r}: send application/json",
                "Content-Type",
                "application/json",
            )
            await _reply(send, 415, [problem])
            return
        too_big = errors.problem(
            f"the body is over the limit of {self.max_body_bytes} bytes",
            "body",
            f"at most {self.max_body_bytes} bytes",
        )
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            await _reply(send, 413, [too_big])
            return
        # Read the body here, bounded, so a chunked body cannot run past the limit either.
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                await _reply(send, 413, [too_big])
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        model = self.schemas.get(scope["path"])
        if model is not None:
            try:
                # As BentoML parses it: an empty body is an empty object.
                model.__pydantic_validator__.validate_json(body or b"{}")
            except ValidationError as exc:
                await _reply(send, 400, errors.from_validation(exc, model))
                return
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


class _Reshaper:
    """Wraps `send`: an error response without our shape is buffered and rewritten into it; the
    OpenAPI document gets our error responses. Everything else streams through untouched."""

    def __init__(
        self,
        send: Send,
        scope: Scope,
        schemas: Mapping[str, type[BaseModel]],
        success: Mapping[str, int],
    ) -> None:
        self.send, self.scope, self.schemas, self.success = send, scope, schemas, success
        self.start: Message | None = None
        self.chunks: list[bytes] = []

    def _wants(self, status: int) -> bool:
        if self.scope["path"].endswith("/docs.json"):
            return status == 200
        return status >= 400

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start" and self._wants(message["status"]):
            self.start = message
            return
        if message["type"] != "http.response.body" or self.start is None:
            await self.send(message)
            return
        self.chunks.append(message.get("body", b""))
        if message.get("more_body", False):
            return
        start, self.start = self.start, None
        body = self._rewrite(start, b"".join(self.chunks))
        headers = [
            (k, v)
            for k, v in start.get("headers", [])
            if k.lower() not in (b"content-length", b"content-type")
        ]
        headers += [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ]
        await self.send({**start, "headers": headers})
        await self.send({"type": "http.response.body", "body": body})

    def _rewrite(self, start: Message, raw: bytes) -> bytes:
        status = start["status"]
        try:
            data = json.loads(raw) if raw else None
        except ValueError:
            data = None
        if self.scope["path"].endswith("/docs.json"):
            return (
                json.dumps(errors.document(data, self.success)).encode()
                if isinstance(data, dict)
                else raw
            )
        if isinstance(data, dict) and "errors" in data:
            return raw  # already ours
        method, path = self.scope["method"], self.scope["path"]
        if status == 400 and isinstance(data, dict):
            return errors.body(errors.from_bentoml_detail(data.get("detail")))
        if status == 404:
            routes = ", ".join(f"POST {p}" for p in self.schemas) or "the routes in /docs.json"
            problem = errors.problem(f"no endpoint {method} {path}", "path", routes)
        elif status == 405:
            allow = dict(start.get("headers", [])).get(b"allow", b"").decode("latin-1")
            problem = errors.problem(f"{method} is not allowed on {path}", "method", allow or None)
        elif status >= 500:
            problem = errors.problem(
                "unexpected server error: the server log has the details"
                if status == 500
                else f"the server could not answer ({status}): retry later"
            )
        else:
            message = data.get("error") if isinstance(data, dict) else None
            problem = errors.problem(str(message or f"request failed with status {status}"))
        return errors.body([problem])

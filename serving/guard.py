"""ASGI middleware that turns away bodies the API must never parse, before BentoML sees them.

Non-JSON content types get 415 (so a pickle body is never deserialized and a multipart body never
reaches BentoML's form parser), bodies over the limit get 413. Both with a JSON error naming the
header or the body.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

JSON_TYPES = {b"application/json"}


async def _reply(send: Send, status: int, error: str, field: str) -> None:
    body = json.dumps({"error": error, "field": field}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class RequestGuard:
    def __init__(self, app: Callable[..., Awaitable[None]], max_body_bytes: int = 1 << 20) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        ctype = headers.get(b"content-type")
        if ctype is not None and ctype.split(b";")[0].strip().lower() not in JSON_TYPES:
            shown = ctype.decode("latin-1")[:80]
            await _reply(
                send,
                415,
                f"unsupported media type {shown!r}: send application/json",
                "Content-Type",
            )
            return
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            await _reply(
                send,
                413,
                f"body of {int(declared)} bytes is over the limit of {self.max_body_bytes} bytes",
                "body",
            )
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
                await _reply(
                    send, 413, f"body is over the limit of {self.max_body_bytes} bytes", "body"
                )
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

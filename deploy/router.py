"""The stable address of a model in a local environment: a small reverse proxy in front of that
model's live release (one router per environment and model, each on its own port).

A deploy starts the new release on a port of its own, checks it, then rewrites the route file
(atomically); the router sees the change on its next request and sends traffic there. Requests
already in flight finish on the old release, which the deploy stops only after a drain period.
A request that cannot reach a release that just went away (connection refused or reset before a
response) is retried against the current route: a predict is a pure function of its body, so a
retry is safe, and a client polling through a switch sees no error.

Run by the local target: `python -m deploy.router --port 3200 --route ROUTE_JSON --model sales`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

# Hop-by-hop headers (RFC 9110 7.6.1) and those the proxy sets itself.
HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
}
RETRIES = 5
MAX_BODY_BYTES = 8 << 20  # the service itself answers 413 far below this; a guard for the proxy


class Routes:
    """The live release's URL, re-read whenever the route file changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, int] | None = None
        self.route: dict[str, Any] | None = None
        self._clients: dict[str, httpx.AsyncClient] = {}

    def current(self) -> dict[str, Any] | None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            self.route = None
            return None
        if (st.st_mtime_ns, st.st_ino) != self._stamp:
            self._stamp = (st.st_mtime_ns, st.st_ino)
            self.route = json.loads(self.path.read_text())
            self._close_stale()
        return self.route

    def client(self, url: str) -> httpx.AsyncClient:
        if url not in self._clients:
            self._clients[url] = httpx.AsyncClient(
                base_url=url, timeout=httpx.Timeout(60.0, connect=2.0)
            )
        return self._clients[url]

    def _close_stale(self) -> None:
        live = self.route["url"] if self.route else None
        for url in [u for u in self._clients if u != live]:
            # Let requests in flight on the old release finish before closing its pool.
            asyncio.get_running_loop().call_later(30, _close, self._clients.pop(url))


_closing: set[asyncio.Task[None]] = set()


def _close(client: httpx.AsyncClient) -> None:
    task = asyncio.ensure_future(client.aclose())
    _closing.add(task)
    task.add_done_callback(_closing.discard)


def app(route_file: Path, env_name: str, model: str | None = None) -> Starlette:
    routes = Routes(route_file)
    what = f"release of {model!r}" if model else "release"
    where = f"release of {model!r} in {env_name!r}" if model else f"release of {env_name!r}"

    async def proxy(request: Request) -> Response:
        body = await request.body()
        if len(body) > MAX_BODY_BYTES:
            return JSONResponse({"error": "request body too large"}, status_code=413)
        headers = [(k, v) for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP]
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        last_error = ""
        for attempt in range(RETRIES):
            route = routes.current()
            if route is None:
                return JSONResponse(
                    {"error": f"no {what} is serving environment {env_name!r}"}, status_code=503
                )
            try:
                upstream = await routes.client(route["url"]).request(
                    request.method, target, content=body, headers=headers
                )
            except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError) as exc:
                # The release went away under us (a switch): retry on the current route.
                last_error = f"{type(exc).__name__}: {exc}"
                await asyncio.sleep(0.05 * (attempt + 1))
                continue
            except httpx.TimeoutException:
                return JSONResponse({"error": "the release did not answer in time"}, 504)
            out = [(k, v) for k, v in upstream.headers.multi_items() if k.lower() not in HOP_BY_HOP]
            out = [(k, v) for k, v in out if k.lower() != "content-encoding"]
            response = Response(upstream.content, status_code=upstream.status_code)
            response.raw_headers = [
                *[(k.encode("latin-1"), v.encode("latin-1")) for k, v in out],
                (b"content-length", str(len(upstream.content)).encode()),
                (b"x-bentogate-release", str(route["release"]).encode()),
            ]
            return response
        return JSONResponse({"error": f"{where} unreachable: {last_error}"}, status_code=502)

    methods = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
    return Starlette(routes=[Route("/{path:path}", proxy, methods=methods)])


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m deploy.router", description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--route", type=Path, required=True, help="JSON file: {release, url}")
    p.add_argument("--env-name", default="local")
    p.add_argument("--model", help="the model this address serves (in messages)")
    args = p.parse_args(argv)
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    uvicorn.run(
        app(args.route, args.env_name, args.model),
        host=args.host,
        port=args.port,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=10,
        server_header=False,  # the release's own headers pass through
        date_header=False,
    )


if __name__ == "__main__":
    main()

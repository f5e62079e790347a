"""Short garbage-collector pauses for a service process: the source of its tail latency.

CPython's full (generation 2) collection stops the event loop for as long as it takes to traverse
every tracked object. Two things made that long here, measured in the worker at 32 clients:

- BentoML 1.4.39's `TimeoutMiddleware` schedules a `loop.call_later(timeout, ...)` per request and
  never cancels it, so each request's context (its OpenTelemetry span, closures, locks: ~50
  objects) stays alive for `traffic.timeout` after the response. At ~1,000 req/s and a 10 s timeout
  that is ~500k extra objects, and full collections of 120-620 ms, ~1 s apart.
- What start-up allocates (BentoML, Starlette, pydantic schemas, numpy, the model: ~120k objects)
  is traversed again by every full collection: ~90 ms each even without the timers.

`release_request_timers()` makes the middleware cancel its timer when the request ends (same 504
after `timeout`), and `freeze_startup_heap()` moves what start-up allocated out of the collector's
sight (`gc.freeze`), so a full collection only traverses what requests allocate: ~1 ms.
"""

from __future__ import annotations

import asyncio
import gc
from typing import Any

from bentoml._internal.server.http import traffic
from starlette.responses import JSONResponse


class ReleasingTimeoutMiddleware(traffic.TimeoutMiddleware):
    """BentoML's TimeoutMiddleware, cancelling its timer once the request is over."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        timer = loop.call_later(self.timeout, self._set_timer_out, waiter)

        async def _send(message: Any) -> None:
            if not waiter.done():
                waiter.set_result(None)
            await send(message)

        fut = asyncio.ensure_future(self.app(scope, receive, _send), loop=loop)
        try:
            await waiter  # the response has started, or the timeout fired
        except TimeoutError:
            if fut.cancel():
                response = JSONResponse(
                    {"error": f"Not able to process the request in {self.timeout} seconds"},
                    status_code=504,
                )
                await response(scope, receive, send)
        else:
            timer.cancel()
            await fut
        finally:
            timer.cancel()


def release_request_timers() -> None:
    """Make BentoML build its timeout middleware from ReleasingTimeoutMiddleware (the app is built
    after the service module is imported, and looks the class up then)."""
    traffic.TimeoutMiddleware = ReleasingTimeoutMiddleware  # type: ignore[misc]


def freeze_startup_heap() -> None:
    """Collect once, then exempt every surviving object from later collections (gc.freeze): call
    when the service is ready, so the collector only ever traverses what requests allocate."""
    gc.collect()
    gc.freeze()

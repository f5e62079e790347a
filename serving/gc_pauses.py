"""Short garbage-collector pauses for a service process: the source of its tail latency.

CPython's full (generation 2) collection stops the event loop for as long as it takes to traverse
every tracked object. Measured in the worker at 32 clients, three things made collections long or
frequent:

- BentoML 1.4.39's `TimeoutMiddleware` schedules a `loop.call_later(timeout, ...)` per request and
  never cancels it, so each request's context (its OpenTelemetry span, closures, locks: ~50
  objects) stays alive for `traffic.timeout` after the response. At ~1,000 req/s and a 10 s timeout
  that is ~500k extra objects, and full collections of 120-620 ms, ~1 s apart.
- What start-up allocates (BentoML, Starlette, pydantic schemas, numpy, the model: ~120k objects)
  is traversed again by every full collection: ~90 ms each even without the timers.
- With CPython's default young threshold (700 allocations) the collector ran every other request,
  ~30 us of CPU per request.

`release_request_timers()` makes the middleware cancel its timer when the request ends (same 504
after `timeout`); `prepare_for_requests()` moves what start-up allocated out of the collector's
sight (`gc.freeze`), so a full collection only traverses what requests allocate (~2 ms), and
collects the young generation less often (~3 us per request, pauses under 6 ms).
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


YOUNG_THRESHOLD = 10_000  # allocations between young collections (CPython's default: 700)


def prepare_for_requests() -> None:
    """Call once the service is ready. Collect once and exempt every survivor from later
    collections (gc.freeze), so a full collection only traverses what requests allocate; and
    collect the young generation every 10,000 allocations instead of 700: a request allocates a
    few hundred, so by default every other request paid a young collection and objects of the
    requests in flight were promoted to older generations, only to die there."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)

import asyncio
import gc

import pytest
from bentoml._internal.server.http import traffic

from serving import gc_pauses


async def _answer(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


async def _hang(scope, receive, send):
    await asyncio.sleep(10)


def _call(app):
    """Run one HTTP request through `app`; return the messages sent and the timers left pending."""
    messages = []

    async def send(message):
        messages.append(message)

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def main():
        await app({"type": "http", "method": "POST", "path": "/"}, receive, send)
        loop = asyncio.get_running_loop()
        return [h for h in loop._scheduled if not h.cancelled()]

    return messages, asyncio.run(main())


def test_timeout_middleware_cancels_its_timer_once_the_response_is_sent():
    messages, pending = _call(gc_pauses.ReleasingTimeoutMiddleware(_answer, timeout=60))
    assert messages[0]["status"] == 200
    assert pending == []


def test_bentomls_own_timeout_middleware_leaves_its_timer_pending():
    # The behaviour gc_pauses works around; if BentoML fixes it, release_request_timers can go.
    bentoml_middleware = gc_pauses.ReleasingTimeoutMiddleware.__mro__[1]
    _, pending = _call(bentoml_middleware(_answer, timeout=60))
    assert len(pending) == 1


def test_timeout_middleware_still_answers_504_after_the_timeout():
    messages, _ = _call(gc_pauses.ReleasingTimeoutMiddleware(_hang, timeout=0.05))
    assert messages[0]["status"] == 504


def test_release_request_timers_makes_bentoml_build_the_releasing_middleware(monkeypatch):
    monkeypatch.setattr(traffic, "TimeoutMiddleware", traffic.TimeoutMiddleware)
    gc_pauses.release_request_timers()
    assert traffic.TimeoutMiddleware is gc_pauses.ReleasingTimeoutMiddleware


@pytest.fixture
def collector():
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


def test_prepare_for_requests_exempts_what_exists_from_later_collections(collector):
    before = gc.get_freeze_count()
    survivors = [[] for _ in range(100)]
    gc_pauses.prepare_for_requests()
    assert gc.get_freeze_count() >= before + len(survivors)


def test_prepare_for_requests_collects_the_young_generation_less_often(collector):
    gc_pauses.prepare_for_requests()
    assert gc.get_threshold()[0] == gc_pauses.YOUNG_THRESHOLD

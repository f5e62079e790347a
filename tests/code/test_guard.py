"""serving/guard.py in front of any ASGI app: errors the app answers itself, and the in-flight
limit, come out in the API's one error shape. (The predict API's own errors: tests/service.)"""

from __future__ import annotations

import anyio
import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from serving.guard import RequestGuard

ERROR_KEYS = {"error", "field", "expected", "errors"}


def app_with(release: anyio.Event | None = None) -> Starlette:
    async def boom(request: Request) -> JSONResponse:
        # As BentoML answers an exception in an API: a JSON body of its own shape.
        return JSONResponse(
            {"error": "An unexpected error has occurred"},
            status_code=500,
            headers={"x-request-id": "r-1"},
        )

    async def bentoml_400(request: Request) -> JSONResponse:
        detail = [{"type": "literal_error", "loc": ["records", 0, "family"], "msg": "Input "
                   "should be 'A', 'B', 'C', 'D' or 'E'"}]  # fmt: skip
        return JSONResponse(
            {"error": "1 validation error for XIODescriptor", "detail": detail}, 400
        )

    async def slow(request: Request) -> PlainTextResponse:
        assert release is not None
        await release.wait()
        return PlainTextResponse("done")

    async def not_ready(request: Request) -> PlainTextResponse:
        return PlainTextResponse("not ready", status_code=503)

    return Starlette(
        routes=[
            Route("/boom", boom, methods=["POST"]),
            Route("/validate", bentoml_400, methods=["POST"]),
            Route("/slow", slow, methods=["POST"]),
            Route("/readyz", not_ready),
        ]
    )


def call(guard: RequestGuard, method: str, path: str) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=guard)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.request(method, path, json={})

    return anyio.run(go)


def test_a_500_from_the_app_gets_the_error_shape_keeping_the_apps_headers():
    response = call(RequestGuard(app_with()), "POST", "/boom")
    assert response.status_code == 500
    assert set(response.json()) == ERROR_KEYS
    assert response.json()["error"] == "unexpected server error: the server log has the details"
    assert response.headers["x-request-id"] == "r-1"


def test_a_bentoml_style_400_is_reshaped_without_its_class_name_or_category_list():
    response = call(RequestGuard(app_with()), "POST", "/validate")
    assert response.status_code == 400
    error = response.json()
    assert set(error) == ERROR_KEYS
    assert error["field"] == "records[0].family"
    assert "IODescriptor" not in response.text
    assert "'E'" not in response.text


def test_probes_are_passed_through_untouched():
    response = call(RequestGuard(app_with()), "GET", "/readyz")
    assert response.status_code == 503
    assert response.text == "not ready"


def test_requests_over_the_in_flight_limit_get_429_with_retry_after():
    async def go() -> tuple[httpx.Response, httpx.Response]:
        release = anyio.Event()
        guard = RequestGuard(app_with(release), max_concurrency=1)
        transport = httpx.ASGITransport(app=guard)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            first: list[httpx.Response] = []

            async def hold() -> None:
                first.append(await client.post("/slow", json={}))

            async with anyio.create_task_group() as tg:
                tg.start_soon(hold)
                while guard.in_flight == 0:  # the first request holds the only slot
                    await anyio.sleep(0.001)
                second = await client.post("/slow", json={})
                release.set()
        return first[0], second

    first, second = anyio.run(go)
    assert first.status_code == 200
    assert second.status_code == 429
    assert second.headers["retry-after"] == "1"
    assert set(second.json()) == ERROR_KEYS
    assert "too many requests in flight (limit 1)" in second.json()["error"]

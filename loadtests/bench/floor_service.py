"""The framework's floor for `make bench`: a BentoML service with the same request validation,
guard and service settings as service.py (decorator arguments, GC pause fixes), that answers
without calling a model. Keep it in step with service.py: the ratio to it is then what the model,
our metrics, the prediction log and the batcher cost."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import bentoml

from core.settings import get_settings
from serving import gc_pauses
from serving.guard import RequestGuard
from serving.runtime import load_served_model
from serving.schema import RegressionResponse, request_model

MODEL = load_served_model(get_settings(), Path(__file__).resolve().parent)
PredictRequest = request_model(MODEL.schema, MODEL.max_records)


@bentoml.service(
    name="floor",
    workers=1,
    traffic={"timeout": 10, "max_concurrency": 256},
    logging={"access": {"enabled": False}},
)
class Floor:
    @bentoml.on_startup
    def _prepare_gc(self) -> None:
        gc_pauses.prepare_for_requests()

    @bentoml.api(route="/predict", input_spec=PredictRequest)
    async def predict(self, records: list[Any]) -> RegressionResponse:
        return RegressionResponse(model="floor", predictions=[0.0] * len(records))


# mypy ignores what a class decorator returns (python/mypy#3135): this is a bentoml Service.
Floor.add_asgi_middleware(RequestGuard, max_body_bytes=get_settings().max_body_bytes)  # type: ignore[attr-defined]
gc_pauses.release_request_timers()

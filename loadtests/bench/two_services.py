"""Topology candidate for `make bench`: preprocessing and model step as two BentoML services
(`bentoml.depends`), the model step with BentoML's adaptive batching. Serves BENTOGATE_MODEL_TAG."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

from pathlib import Path
from typing import Any

import bentoml
import pandas as pd

from core.settings import get_settings
from models import runtimes
from serving.guard import RequestGuard
from serving.runtime import load_served_model
from serving.schema import RegressionResponse, request_model

MODEL = load_served_model(get_settings(), Path(__file__).resolve().parent)
PredictRequest = request_model(MODEL.schema, MODEL.max_records)
FEATURES = list(MODEL.schema.features)


@bentoml.service(name="model_step", workers=1, traffic={"timeout": 10})
class ModelStep:
    model_ref = bentoml.models.BentoModel(MODEL.tag)

    def __init__(self) -> None:
        self.model = runtimes.load_registered(MODEL.tag)  # files verified, skops

    # Generous max_latency_ms: a tight one makes the dispatcher shed load with 503s.
    @bentoml.api(batchable=True, max_batch_size=256, max_latency_ms=2000)
    def predict(self, rows: list[dict[str, Any]]) -> list[float]:
        frame = pd.DataFrame({name: [r[name] for r in rows] for name in FEATURES})
        return self.model.predict(frame).tolist()


@bentoml.service(name="preprocess", workers=1, traffic={"timeout": 10, "max_concurrency": 256})
class Preprocess:
    step = bentoml.depends(ModelStep)

    @bentoml.api(route="/predict", input_spec=PredictRequest)
    async def predict(self, records: list[Any]) -> RegressionResponse:
        rows = [r.model_dump(mode="json") for r in records]
        return RegressionResponse(
            model=MODEL.tag, predictions=await self.step.to_async.predict(rows)
        )


# mypy ignores what a class decorator returns (python/mypy#3135): this is a bentoml Service.
Preprocess.add_asgi_middleware(RequestGuard, max_body_bytes=get_settings().max_body_bytes)  # type: ignore[attr-defined]

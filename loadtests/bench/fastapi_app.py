"""Baseline for `make bench`: the same model behind plain FastAPI + uvicorn, predicting per request,
with the same strict request model validated from the raw JSON (as BentoML does).
Serves BENTOGATE_MODEL_TAG."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from core.settings import get_settings
from models import runtimes
from serving.runtime import load_served_model
from serving.schema import request_model

MODEL = load_served_model(get_settings(), Path(__file__).resolve().parent)
PredictRequest = request_model(MODEL.schema, MODEL.max_records)
FEATURES = list(MODEL.schema.features)
estimator = runtimes.load_registered(MODEL.tag)  # files verified, skops

app = FastAPI()


@app.get("/readyz")
def readyz() -> dict[str, str]:
    return {"status": "ok"}


def _predict(rows: list[dict]) -> list[float]:
    frame = pd.DataFrame({name: [r[name] for r in rows] for name in FEATURES})
    return estimator.predict(frame).tolist()


@app.post("/predict")
async def predict(request: Request) -> JSONResponse:
    try:
        body = PredictRequest.model_validate_json(await request.body())
    except ValidationError as exc:
        return JSONResponse({"detail": exc.errors(include_url=False, include_input=False)}, 400)
    rows = body.model_dump()["records"]  # the request model is built at run time
    return JSONResponse(
        {"model": MODEL.tag, "predictions": await run_in_threadpool(_predict, rows)}
    )

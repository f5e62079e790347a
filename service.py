"""bentogate service template: a preprocessing step and a model step behind a typed predict API.

Data scientists: the two places marked FILL IN are yours; everything else is generic. The request
schema, the example in the OpenAPI document and the limits all come from the registered model's
own record (its fitted feature schema), so a new model package needs no change here.

Which model: BENTOGATE_MODEL_TAG if set, else the production model of BENTOGATE_MODEL (default
"sales"); inside a built Bento, the model bundled with it.

Fast path: a model package may provide a compiled predictor (`ModelSpec.compile`, e.g.
models/sales/compiled.py). It replaces the two hooks only if it reproduced the model on the whole
validation set at registration; otherwise the hooks below run the fitted scikit-learn model.
"""

from __future__ import annotations

import os

# One replica per core: OpenMP threads only add overhead (a one-row predict of the default model
# takes ~19 ms with two threads, ~9 ms with one). Set before scikit-learn loads OpenMP.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import logging
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import bentoml
from prometheus_client import Counter, Histogram

from core.registry import COMPILED_FILE, MODEL_FILE
from core.settings import get_settings
from serving import predlog
from serving.batching import MicroBatcher
from serving.guard import RequestGuard
from serving.runtime import load_served_model
from serving.schema import ClassificationResponse, RegressionResponse, request_model

# pandas, numpy and scikit-learn (through joblib) are imported inside the class, where they are
# used: BentoML imports this file in its supervising process too, which never predicts. Importing
# them there cost ~2.5 s of cold start and ~100 MB per replica.
if TYPE_CHECKING:
    import pandas as pd

SETTINGS = get_settings()
# Reads the model's record from the store (not the model itself) to derive the API from it.
MODEL = load_served_model(SETTINGS, Path(__file__).resolve().parent)
PredictRequest = request_model(MODEL.schema, MODEL.max_records)
Response = ClassificationResponse if MODEL.task == "classification" else RegressionResponse
FEATURES = list(MODEL.schema.features)

LOG = logging.getLogger("bentogate")
LOG.setLevel(logging.INFO)  # BentoML sets the root logger to WARNING: keep our start-up lines
# One model per process: bind the label once, not on every request.
PREDICTIONS = Counter("bentogate_predictions", "Records predicted.", ["model_tag"]).labels(
    MODEL.tag
)
LATENCY = Histogram(
    "bentogate_predict_seconds",
    "Time in the predict API, validation excluded.",
    ["model_tag"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
).labels(MODEL.tag)


def _load(path: Path) -> Any:
    import joblib

    return joblib.load(path)


@bentoml.service(
    name=f"{MODEL.name}_api",
    # One worker per replica: the model is small and cheap; scale with replicas, not workers.
    workers=1,
    traffic={"timeout": 10, "max_concurrency": 256},
    labels={"model": MODEL.name, "model_tag": MODEL.tag},
)
class Predictor:
    # Declared at class scope so `bentoml build` bundles the model into the Bento.
    model_ref = bentoml.models.BentoModel(MODEL.tag)

    def __init__(self) -> None:
        self.log = predlog.PredictionLog(SETTINGS.prediction_log)
        # The compiled predictor, when the model has one that reproduced it on the whole
        # validation set at registration, replaces preprocess + infer: numpy only, no
        # scikit-learn or pandas in this process. BENTOGATE_COMPILED=false serves the model itself.
        self.compiled, self.model, self.ready = None, None, False
        path = Path(self.model_ref.path_of(COMPILED_FILE))
        if MODEL.compiled and path.is_file():
            try:
                self.compiled = _load(path)
                self.ready = self._golden_prediction_matches()
                if not self.ready:
                    LOG.error("compiled predictor of %s misses its golden prediction", MODEL.tag)
            except Exception:  # e.g. saved by an older format: the model itself still serves
                LOG.exception("compiled predictor of %s cannot be used", MODEL.tag)
            if not self.ready:
                self.compiled = None
        if self.compiled is None:
            self.model = _load(Path(self.model_ref.path_of(MODEL_FILE)))
            self.ready = self._golden_prediction_matches()
        self.batcher = MicroBatcher(
            self._predict_rows,
            max_batch_rows=max(MODEL.max_records, 256),
            threaded=self.compiled is None,  # the compiled predictor is fast enough to run inline
        )
        LOG.info(
            "%s loaded (%s), ready: %s",
            MODEL.tag,
            "compiled predictor" if self.compiled is not None else "scikit-learn model",
            self.ready,
        )
        if not self.ready:
            LOG.error("%s does not reproduce its golden prediction: not ready", MODEL.tag)

    # ---- FILL IN (optional): preprocessing step, request records -> model input ----------------
    def preprocess(self, records: list[dict[str, Any]]) -> pd.DataFrame:
        # The fitted Pipeline holds the feature transforms, so this only arranges the columns.
        import pandas as pd

        return pd.DataFrame({name: [r[name] for r in records] for name in FEATURES})

    # ---- FILL IN (optional): model step, model input -> one output per record ------------------
    def infer(self, features: pd.DataFrame) -> list[Any]:
        if MODEL.task == "classification":
            labels = self.model.predict(features).tolist()
            proba = self.model.predict_proba(features)
            classes = [str(c) for c in self.model.classes_]
            return [
                (label, dict(zip(classes, map(float, p), strict=True)))
                for label, p in zip(labels, proba, strict=True)
            ]
        return self.model.predict(features).astype(float).tolist()

    # ---- generic from here on -------------------------------------------------------------------
    def _predict_rows(self, records: list[dict[str, Any]]) -> list[Any]:
        if self.compiled is not None:
            return self.compiled(records).tolist()
        return self.infer(self.preprocess(records))

    def _golden_prediction_matches(self) -> bool:
        """Ready only if the loaded model reproduces the prediction recorded at training time."""
        golden = MODEL.golden
        if not golden:
            return False
        out = self._predict_rows(golden["records"])
        if MODEL.task == "classification":
            return [o[0] for o in out] == golden["predictions"]
        import numpy as np

        return bool(np.allclose(out, golden["predictions"], rtol=1e-6, atol=1e-9))

    def __is_ready__(self) -> bool:
        return self.ready

    @bentoml.api(route="/predict", input_spec=PredictRequest)
    async def predict(self, records: list[Any], ctx: bentoml.Context) -> Response:  # type: ignore[valid-type]
        """Predict one output per record, in request order, with the tag of the model."""
        start = time.perf_counter()
        request_id = ctx.request.headers.get("x-request-id") or os.urandom(16).hex()
        rows = [r.model_dump() for r in records]
        outputs = await self.batcher.submit(rows)
        if MODEL.task == "classification":
            body: dict[str, Any] = {
                "predictions": [o[0] for o in outputs],
                "probabilities": [o[1] for o in outputs],
            }
        else:
            if not all(math.isfinite(v) for v in outputs):
                raise bentoml.exceptions.InternalServerError("model returned a non-finite value")
            body = {"predictions": outputs}
        elapsed = time.perf_counter() - start
        PREDICTIONS.inc(len(rows))
        LATENCY.observe(elapsed)
        ctx.response.headers["x-request-id"] = request_id
        ctx.response.headers["x-model-tag"] = MODEL.tag
        self.log.write(request_id, MODEL.tag, rows, body, elapsed * 1000)
        return Response(model=MODEL.tag, **body)


Predictor.add_asgi_middleware(
    RequestGuard, max_body_bytes=SETTINGS.max_body_bytes, schemas={"/predict": PredictRequest}
)

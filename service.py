"""bentogate's predict API: the model package's predict path behind a typed, validated endpoint.

Nothing here is model-specific. The request schema, its OpenAPI example and the limits come from
the registered model's record (its fitted feature schema); the computation is the model package's
predict path (`prepare` -> `predict`, see models/contract.py), served by the fastest runtime that
reproduced it on the whole validation set at registration: the package's compiled predictor,
ONNX Runtime, or the scikit-learn model itself (models/runtimes.py). To change what the model
computes, edit the model package: training, the gates and this service all follow.

Which model: BENTOGATE_MODEL_TAG if set, else the production model of BENTOGATE_MODEL (default
"sales"); inside a built Bento, the model bundled with it.
"""

from __future__ import annotations

import os

# One replica per core: OpenMP threads only add overhead (a one-row predict of the default model
# takes ~19 ms with two threads, ~9 ms with one). Set before scikit-learn loads OpenMP.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
# BentoML posts usage events to its host at every start unless told not to: silent whichever way
# this is served (make, a deploy, a raw `bentoml serve`), unless the variable says otherwise.
os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")

import logging
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import bentoml
from prometheus_client import Counter, Histogram
from starlette.responses import Response as HTTPResponse

from core.settings import SettingsError, get_settings
from serving import feedback, framework, gc_pauses, predlog
from serving.batching import MicroBatcher, Part
from serving.docs_page import DocsPage
from serving.guard import RequestGuard
from serving.runtime import NoModelError, load_served_model, serve_runtime
from serving.schema import ClassificationResponse, RegressionResponse, request_model

framework.honour_do_not_track()
framework.metrics_folder_from_environment()  # a release's own, not one shared and wiped

# Runtimes import numpy, ONNX Runtime or scikit-learn only when the worker loads them: BentoML
# imports this file in its supervising process too, which never predicts (~2.5 s, ~100 MB saved).
try:
    SETTINGS = get_settings()
    # Reads the model's record from the store (not the model itself) to derive the API from it.
    MODEL = load_served_model(SETTINGS, Path(__file__).resolve().parent)
except (SettingsError, NoModelError) as exc:  # the operator's to fix: a line, not a traceback
    print(f"error: {exc}", file=sys.stderr)
    raise SystemExit(2) from None
PredictRequest = request_model(MODEL.schema, MODEL.max_records)
Response = ClassificationResponse if MODEL.task == "classification" else RegressionResponse
FeedbackRequest = feedback.feedback_request(SETTINGS.feedback_max_items, MODEL.actual)
RELEASE = SETTINGS.release  # the deploy's release id; None outside a deploy

LOG = logging.getLogger("bentogate")
LOG.setLevel(logging.INFO)  # BentoML sets the root logger to WARNING: keep our start-up lines
# One model and one release per process: bind the labels once, not on every request.
LABELS = {"model_tag": MODEL.tag, "release": RELEASE or ""}
PREDICTIONS = Counter("bentogate_predictions", "Records predicted.", list(LABELS)).labels(**LABELS)
LATENCY = Histogram(
    "bentogate_predict_seconds",
    "Time in the predict API, validation excluded.",
    list(LABELS),
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
).labels(**LABELS)
FALLBACKS = Counter(
    "bentogate_fallback_answers",
    "Predict requests this release answered for another (the router's stable one was late).",
    list(LABELS),
).labels(**LABELS)
ACTUALS = Counter(
    "bentogate_actuals_received", "Actuals accepted by POST /feedback.", list(LABELS)
).labels(**LABELS)


def _answer_body(outputs: Sequence[Any]) -> dict[str, Any] | None:
    """A request's answer from its outputs; None when a regressor's output is not finite."""
    if MODEL.task == "classification":
        return {"predictions": [o[0] for o in outputs], "probabilities": [o[1] for o in outputs]}
    if not all(math.isfinite(v) for v in outputs):
        return None
    return {"predictions": outputs}


@bentoml.service(
    name=f"{MODEL.name}_api",
    # One worker per replica: the model is small and cheap; scale with replicas, not workers.
    workers=1,
    # Limits from the model's config. serving.max_concurrency is enforced by our guard below, so
    # its 429 has the API's error shape and a Retry-After, and health probes are never limited.
    traffic={"timeout": MODEL.timeout_s},
    # No access log: the prediction log has a line per prediction, and the access line cost ~50 us
    # of CPU per request (~11%). Requests are still counted per status in bentoml_service_request_*.
    logging={"access": {"enabled": False}},
    labels={"model": MODEL.name, "model_tag": MODEL.tag},
)
class Predictor:
    # Declared at class scope so `bentoml build` bundles the model into the Bento.
    model_ref = bentoml.models.BentoModel(MODEL.tag)

    def __init__(self) -> None:
        # Each line is in the kernel before the response is sent (serving/predlog.py).
        self.log = predlog.JsonLinesLog(
            SETTINGS.prediction_log, SETTINGS.log_max_bytes, SETTINGS.log_keep
        )
        self.actuals = predlog.JsonLinesLog(
            SETTINGS.actuals_log, SETTINGS.log_max_bytes, SETTINGS.log_keep
        )
        self.runtime, self.ready = serve_runtime(MODEL, Path(self.model_ref.path))
        # A runtime slower than ~1 ms a call runs in a thread so the event loop keeps reading
        # and validating requests; the fast ones run inline, cheaper than the thread hand-off.
        self.batcher = MicroBatcher(
            self.runtime.predict,
            max_batch_rows=max(MODEL.max_records, 256),
            finish=self._answer,
            threaded=self.runtime.name == "sklearn",
        )
        LOG.info("%s loaded (runtime: %s), ready: %s", MODEL.tag, self.runtime.name, self.ready)

    def _answer(self, parts: list[Part]) -> list[dict[str, Any] | None]:
        """The answer to each request of a micro-batch (None: a non-finite output, a 500), their
        records appended to the prediction log in one write before any of them is sent: a
        record built and written per request cost ~2 points more of the throughput."""
        done = time.perf_counter()
        answers, lines = [], []
        for (at, start, request_id, routed_to), rows, outputs in parts:
            body = _answer_body(outputs)
            answers.append(body)
            if body is not None and self.log.enabled:
                lines.append(
                    predlog.prediction_record(
                        at,
                        request_id,
                        MODEL.tag,
                        RELEASE,
                        routed_to,
                        (done - start) * 1000,
                        rows,
                        body,
                    )
                )
        if lines:  # a failed write fails the batch's requests (500) rather than answer unlogged
            self.log.append(b"".join(lines))
        return answers

    def __is_ready__(self) -> bool:
        return self.ready

    @bentoml.on_startup
    def _prepare_gc(self) -> None:
        # Model loaded: from now on the collector only sees what requests allocate (gc_pauses.py).
        gc_pauses.prepare_for_requests()

    @bentoml.api(route="/predict", input_spec=PredictRequest)
    async def predict(self, records: list[Any], ctx: bentoml.Context) -> Response:  # type: ignore[valid-type]
        """Predict one output per record, in request order, with the tag of the model."""
        at, start = time.time(), time.perf_counter()
        headers = ctx.request.headers
        request_id = headers.get("x-request-id") or os.urandom(16).hex()
        # Set by the router (deploy/nginx.py): the release it meant; another one answering is
        # its fallback. Cut short: a direct client could send anything.
        routed_to = headers.get("x-bentogate-routed-to") or None
        if routed_to is not None:
            routed_to = routed_to[:64]
            if routed_to != RELEASE:
                FALLBACKS.inc()
        rows = [r.model_dump() for r in records]
        # Built, and logged, in the micro-batch: see _answer.
        body = await self.batcher.submit(rows, (at, start, request_id, routed_to))
        if body is None:
            raise bentoml.exceptions.InternalServerError("model returned a non-finite value")
        PREDICTIONS.inc(len(rows))
        LATENCY.observe(time.perf_counter() - start)
        # Answered ready-made (same bytes): BentoML's serialization of a returned model plus the
        # merge of ctx.response headers cost ~36 us per request. The annotation still makes the schema.
        return HTTPResponse(
            Response(model=MODEL.tag, **body).model_dump_json(),
            media_type="application/json",
            headers={"x-request-id": request_id, "x-model-tag": MODEL.tag},
        )

    @bentoml.api(route="/feedback", input_spec=FeedbackRequest)
    async def feedback(self, root: Any) -> feedback.FeedbackAccepted:
        """Record the observed outcomes (actuals) of earlier predictions, by their request id:
        one `{request_id, actual, observed_at}`, or `{"actuals": [...]}`. Answers 202."""
        items = feedback.items(root)
        lines = predlog.actual_records(
            ((a.request_id, a.actual, a.observed_at) for a in items),
            time.time(),
            MODEL.tag,
            RELEASE,
        )
        self.actuals.append(lines)  # one write for the batch: in the kernel before the answer
        ACTUALS.inc(len(items))
        return HTTPResponse(  # type: ignore[return-value]  # 202; the annotation makes the schema
            feedback.FeedbackAccepted(accepted=len(items)).model_dump_json(),
            status_code=202,
            media_type="application/json",
        )


# The guard validates bodies with the request model first, so every bad request gets one error
# shape in plain words. mypy ignores what a class decorator returns (python/mypy#3135).
Predictor.add_asgi_middleware(  # type: ignore[attr-defined]
    RequestGuard,
    max_body_bytes=SETTINGS.max_body_bytes,
    schemas={"/predict": PredictRequest, "/feedback": FeedbackRequest},
    max_concurrency=MODEL.max_concurrency,
    success={"/feedback": 202},
)
# BentoML's docs page loads Google Tag Manager: ours uses only the bundled Swagger UI files.
Predictor.add_asgi_middleware(DocsPage)  # type: ignore[attr-defined]
# BentoML's request timeout would keep every request's objects alive for `timeout` seconds.
gc_pauses.release_request_timers()

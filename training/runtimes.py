"""Admit faster runtimes at registration: each must reproduce the predict path on every row.

For each runtime in `models.runtimes.ORDER`, build its file in a scratch folder, load it back
through the same `models.runtimes.load` the service uses, and compare its outputs with the predict
path's on the whole validation set: once for all rows, and one call per row for the first rows (a
runtime may branch on batch size). Where the schema has nullable columns, validation rows with
those fields null come first (`null_probes`): the API accepts null there, so a runtime must answer
it as the predict path does (skl2onnx's trees, for one, do not send NaN where scikit-learn learned). The verdicts, refusals with their reasons, are stored with the
model; the admitted files are saved beside it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from core import modelfile
from models import predict as path_
from models import runtimes
from models.config import ParityConfig
from models.contract import ModelSpec, Outputs
from training.train import refuses_missing

log = logging.getLogger("bentogate.training")

SINGLE_ROWS = 100  # rows also checked one call each (not for sklearn: it is the path itself)
PROBE_ROWS = 20  # validation rows copied with nullable fields null, per field (`null_probes`)


def _build(
    name: runtimes.Name, spec: ModelSpec, model: Any, records: list[dict[str, Any]], dest: Path
) -> Path:
    """Write runtime `name`'s file (dest, or model.pkl beside it for a package that opted in to
    pickles); raise with the reason it cannot be built."""
    if name == "compiled":
        if spec.compile is None:
            raise _Refused("the model package has no compiled predictor")
        if spec.task != "regression":
            raise _Refused("compiled predictors are for regression models")
        from models import forest

        predictor = spec.compile(model)
        if not isinstance(predictor, forest.CompiledRegressor):
            raise _Refused("the compiled predictor is not a models.forest.CompiledRegressor")
        forest.save(predictor, dest)
    elif name == "onnx":
        from training.onnx_export import NotConvertible, to_onnx

        try:
            data = to_onnx(model, path_.prepare(spec, records[:SINGLE_ROWS]), spec.task)
        except NotConvertible as exc:
            raise _Refused(str(exc)) from None
        if spec.predict is not None:
            # ONNX converts the fitted model alone: a custom predict step is not in it, so parity
            # below decides whether the two still agree.
            log.info("[register] onnx: the package's own predict step is checked by parity")
        dest.write_bytes(data)
    else:
        trust = runtimes.persistence(spec.name)
        return modelfile.dump_model(
            model,
            dest.parent,
            trusted=trust.trusted,
            allow_pickle=trust.allow_pickle,
            config=f"models/{spec.name}/config.yaml",
        )
    return dest


class _Refused(Exception):
    pass


def _check(
    name: runtimes.Name,
    folder: Path,
    spec: ModelSpec,
    classes: list[Any] | None,
    records: list[dict[str, Any]],
    expected: Outputs,
    parity: ParityConfig,
) -> dict[str, Any]:
    """The verdict on runtime `name`. ONNX is tried first fed straight from the records (no
    pandas, no model package in the worker), then, if the package has its own prepare, fed what
    prepare returns: parity decides which, if either, reproduces the predict path."""
    feeds = [False, True] if name == "onnx" and spec.prepare is not None else [False]
    verdict: dict[str, Any] = {}
    for custom_prepare in feeds:
        try:
            verdict = _compare(
                name, folder, spec, classes, records, expected, parity, custom_prepare
            )
        except Exception as exc:  # a runtime that fails to run is not admitted
            verdict = {"admitted": False, "reason": f"{type(exc).__name__}: {exc}"[:300]}
        if verdict["admitted"]:
            break
    return verdict


def _compare(
    name: runtimes.Name,
    folder: Path,
    spec: ModelSpec,
    classes: list[Any] | None,
    records: list[dict[str, Any]],
    expected: Outputs,
    parity: ParityConfig,
    custom_prepare: bool,
) -> dict[str, Any]:
    run = runtimes.load(
        name,
        folder,
        model_name=spec.name,
        task=spec.task,
        classes=classes,
        custom_prepare=custom_prepare,
    )
    tol = {"rtol": parity.rtol, "atol": parity.atol, "probability_atol": parity.probability_atol}
    ok, why, diff = runtimes.agree(expected, run(records), **tol)
    if ok and name != "sklearn":
        singles = records[:SINGLE_ROWS]
        got = [run([r]) for r in singles]
        import numpy as np

        one_by_one = Outputs(
            np.concatenate([g.predictions for g in got]),
            None
            if expected.probabilities is None
            else np.concatenate([g.probabilities for g in got if g.probabilities is not None]),
        )
        head = Outputs(
            expected.predictions[: len(singles)],
            None if expected.probabilities is None else expected.probabilities[: len(singles)],
        )
        ok, why, diff1 = runtimes.agree(head, one_by_one, **tol)
        diff = max(diff, diff1)
        why = f"one record per call: {why}" if why else why
    return {
        "admitted": ok,
        "rows": len(records),
        "max_abs_diff": diff,
        "tolerance": tol,
        "reason": "reproduces the predict path on every validation row" if ok else why,
        "rows_with_missing": sum(any(v is None for v in r.values()) for r in records),
        "feeds": "prepare" if custom_prepare else "records",
    }


def null_probes(spec: ModelSpec, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Validation records with their nullable fields null: each field alone, then all at once.
    The API accepts null there, so a runtime must answer it as the predict path does, even when
    the validation rows happen to hold no missing value."""
    nullable = [c.name for c in spec.schema.feature_columns if c.nullable]
    head = records[:PROBE_ROWS]
    groups = [[name] for name in nullable] + ([nullable] if len(nullable) > 1 else [])
    return [{**r, **dict.fromkeys(group)} for group in groups for r in head]


def _joined(first: Outputs, then: Outputs) -> Outputs:
    import numpy as np

    probabilities = None
    if first.probabilities is not None and then.probabilities is not None:
        probabilities = np.concatenate([first.probabilities, then.probabilities])
    return Outputs(np.concatenate([first.predictions, then.predictions]), probabilities)


def admit(
    spec: ModelSpec,
    model: Any,
    records: list[dict[str, Any]],
    expected: Outputs,
    classes: list[Any] | None,
    parity: ParityConfig,
    scratch: Path,
) -> tuple[dict[str, dict[str, Any]], dict[str, Path]]:
    """(verdict per runtime, admitted files by name in `scratch`). sklearn is the predict path
    itself and always admitted; the others only by parity, on rows with missing values too."""
    probes = null_probes(spec, records)
    if probes:  # first: the ONNX conversion's sample and the one-record calls include them
        records = [*probes, *records]
        try:
            answers = path_.predict_records(spec, model, probes)
        except ValueError as exc:
            raise refuses_missing(spec, exc) or exc from None
        expected = _joined(answers, expected)
    verdicts: dict[str, dict[str, Any]] = {}
    files: dict[str, Path] = {}
    for name in runtimes.ORDER:
        dest = scratch / runtimes.FILES[name]
        try:
            dest = _build(name, spec, model, records, dest)
            verdict = _check(name, scratch, spec, classes, records, expected, parity)
        except _Refused as exc:
            verdict = {"admitted": False, "reason": str(exc)}
        except modelfile.UnsafeModelFile:  # the model itself cannot be saved safely: config
            raise
        except Exception as exc:  # a runtime that fails to build or run is not admitted
            verdict = {"admitted": False, "reason": f"{type(exc).__name__}: {exc}"[:300]}
        if name == "sklearn" and not verdict["admitted"]:
            raise RuntimeError(f"the predict path does not reproduce itself: {verdict['reason']}")
        verdicts[name] = verdict
        if verdict["admitted"]:
            files[name] = dest
        else:
            dest.unlink(missing_ok=True)
        log.info(
            "[register] runtime %s: %s",
            name,
            "admitted" if verdict["admitted"] else f"refused ({verdict['reason']})",
        )
    return verdicts, files


def chosen(verdicts: dict[str, dict[str, Any]]) -> str:
    return next(n for n in runtimes.ORDER if verdicts.get(n, {}).get("admitted"))

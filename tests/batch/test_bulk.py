"""The bulk path (batch/score.py on a whole batch: column-wise check, one runtime call) gives the
outputs the service's per-record call gives, for every admitted runtime of the default model and
of a brought-in classifier. No Spark: this is the function every partition runs."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from batch import job, rows, score
from core.settings import Settings
from models import get_spec
from serving.runtime import serve_runtime


def served(tag: str, runtime: str):
    """The model as the service would serve it, forced onto `runtime`, loaded and golden-checked."""
    model, folder = job.resolve_model(Settings(model_tag=tag))
    model = dataclasses.replace(model, runtime=runtime, forced=True)
    loaded, ready = serve_runtime(model, folder)
    assert ready, f"{runtime} runtime of {tag} is not ready"
    return model, loaded


def bulk(model, loaded, frame: pd.DataFrame) -> pd.DataFrame:
    ids = pd.Series(range(len(frame)))
    return score.score_frame(frame, ids, model, loaded, rows.batch_model(model.schema))


def per_record(model, loaded, frame: pd.DataFrame) -> list:
    """What the API answers for the same rows: the per-row check, then LoadedRuntime.predict."""
    checked = rows.check(frame, model.schema, rows.batch_model(model.schema))
    assert checked.valid == list(range(len(frame)))
    return loaded.predict(checked.records)


@pytest.mark.parametrize("runtime", ["compiled", "sklearn"])
def test_bulk_sales_predictions_are_identical_to_the_per_record_calls_even_for_repeated_rows(
    production_tag, runtime
):
    model, loaded = served(production_tag, runtime)
    data = get_spec("sales").default_data(42).head(3000)
    frame = pd.concat([data, data.head(500)], ignore_index=True)[list(model.schema.features)]

    out = bulk(model, loaded, frame)

    assert out["reason"].isna().all()
    assert out["prediction"].tolist() == per_record(model, loaded, frame)


@pytest.mark.parametrize("runtime", ["onnx", "sklearn"])
def test_bulk_cancer_labels_and_probabilities_are_identical_to_the_per_record_calls(
    cancer_tag, runtime
):
    model, loaded = served(cancer_tag, runtime)
    frame = get_spec("cancer").default_data(42).head(300)[list(model.schema.features)]

    out = bulk(model, loaded, frame)

    expected = per_record(model, loaded, frame)
    assert out["prediction"].tolist() == [label for label, _ in expected]
    for column, cls in zip(score.probability_columns(model), loaded.classes, strict=True):
        assert out[column].tolist() == [p[cls] for _, p in expected]


def test_a_batch_with_bad_rows_scores_the_rest_in_bulk_and_words_the_apis_reasons(production_tag):
    model, loaded = served(production_tag, "compiled")
    frame = get_spec("sales").default_data(42).head(50)[list(model.schema.features)]
    frame = frame.astype({"class": object})
    frame.loc[3, "class"] = "abc"
    frame.loc[9, "item_nbr"] = -5

    out = bulk(model, loaded, frame)

    assert np.flatnonzero(out["reason"].notna()).tolist() == [3, 9]
    assert out.loc[[3, 9], "field"].tolist() == ["class", "item_nbr"]
    assert "expected an integer from 0 to 99999, got a string 'abc'" in out.loc[3, "reason"]
    good = frame.drop(index=[3, 9]).astype({"class": "int64"})
    assert out["prediction"].drop(index=[3, 9]).tolist() == per_record(model, loaded, good)

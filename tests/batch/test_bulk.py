"""The bulk path (batch/score.py on a whole batch: column-wise check, one runtime call) gives the
outputs the service's per-record call gives, for every admitted runtime of the default model and
of a brought-in classifier. No Spark: this is the function every partition runs."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from batch import job, rows, score, tasks
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


def run_task(model, loaded, task, staging, key=None, id_type=None):
    return tasks.run(
        task, model, loaded, rows.batch_model(model.schema), key, id_type or pa.int64(), staging
    )


def test_a_retried_task_overwrites_its_own_part_files_and_leaves_no_temporary_file(
    production_tag, tmp_path
):
    model, loaded = served(production_tag, "compiled")
    data = get_spec("sales").default_data(42).head(100)
    data.to_parquet(tmp_path / "in.parquet", index=False)
    staging = tmp_path / "staging"
    for kind in ("predictions", "rejects"):
        (staging / kind).mkdir(parents=True)
    planned = tasks.plan(tmp_path / "in.parquet", "parquet", cores=2)

    first = [run_task(model, loaded, t, staging) for t in planned.tasks]
    again = run_task(model, loaded, planned.tasks[1], staging)  # as Spark retries a task

    assert again["rows"] == first[1]["rows"] == {"in": 25, "scored": 25, "rejected": 0}
    assert sorted(p.name for p in (staging / "predictions").iterdir()) == [
        f"part-0000{i}.parquet" for i in range(4)
    ]
    assert sorted(p.name for p in (staging / "rejects").iterdir()) == [
        f"part-0000{i}.parquet" for i in range(4)
    ]
    out = pd.read_parquet(staging / "predictions").sort_values("id")
    assert out["id"].tolist() == list(range(1, 101))
    frame = data[list(model.schema.features)]
    assert out["prediction"].tolist() == per_record(model, loaded, frame)


def test_a_task_that_fails_midway_writes_no_part_file(production_tag, tmp_path):
    model, loaded = served(production_tag, "compiled")
    get_spec("sales").default_data(42).head(100).to_parquet(tmp_path / "in.parquet", index=False)
    staging = tmp_path / "staging"
    for kind in ("predictions", "rejects"):
        (staging / kind).mkdir(parents=True)
    planned = tasks.plan(tmp_path / "in.parquet", "parquet", cores=1)
    size = (tmp_path / "in.parquet").stat().st_size
    with open(tmp_path / "in.parquet", "r+b") as fh:  # the file is damaged after planning
        fh.truncate(size // 2)

    with pytest.raises((pa.ArrowInvalid, OSError)):
        run_task(model, loaded, planned.tasks[0], staging)

    assert list((staging / "predictions").iterdir()) == []
    assert list((staging / "rejects").iterdir()) == []

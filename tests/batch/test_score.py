"""make score: the service's predictions for the same records, rejects with reasons, a manifest,
`_SUCCESS`, and nothing written for bad input. One local Spark session for the module."""

from __future__ import annotations

import json
import os

import httpx
import pandas as pd
import pytest

from batch import job, spark
from core.process import Server
from core.settings import ROOT, Settings
from models import get_spec


@pytest.fixture(scope="module")
def session():
    s = spark.session("local[2]", app="bentogate-tests")
    yield s
    s.stop()


@pytest.fixture(scope="module")
def services(production_tag, cancer_tag, tmp_path_factory):
    """The sales and cancer services, really running on free loopback ports."""
    logs = tmp_path_factory.mktemp("service-logs")
    servers = {
        name: Server(
            "service:Predictor",
            cwd=ROOT,
            env={"BENTOGATE_MODEL_TAG": tag, "BENTOML_HOME": os.environ["BENTOML_HOME"]},
            log_path=logs / f"{name}.log",
        ).start()
        for name, tag in (("sales", production_tag), ("cancer", cancer_tag))
    }
    try:
        for server in servers.values():
            server.wait_ready(120)
        yield {name: server.url for name, server in servers.items()}
    finally:
        for server in servers.values():
            server.stop()


def score(tmp_path, data, tag, **kwargs) -> dict:
    request = job.Request("test", data, tmp_path / "out", "local[2]", **kwargs)
    return job.run(request, Settings(model_tag=tag, batch_dir=tmp_path / "batch"))


def served(url: str, records: list[dict]) -> list[dict]:
    """The running service's answer per record, in chunks the API accepts."""
    out = []
    with httpx.Client(base_url=url, timeout=60) as client:
        for i in range(0, len(records), 500):
            r = client.post("/predict", json={"records": records[i : i + 500]})
            assert r.status_code == 200, r.text
            body = r.json()
            probabilities = body.get("probabilities") or [None] * len(body["predictions"])
            out += [
                {"prediction": p, "probabilities": q}
                for p, q in zip(body["predictions"], probabilities, strict=True)
            ]
    return out


def test_batch_predictions_equal_the_running_sales_services_and_the_job_is_a_record(
    session, services, production_tag, tmp_path
):
    spec = get_spec("sales")
    rows = spec.default_data(42).head(1500)
    rows.to_parquet(tmp_path / "sales.parquet", index=False)

    manifest = score(tmp_path, tmp_path / "sales.parquet", production_tag)

    out = pd.read_parquet(tmp_path / "out" / "predictions").sort_values("id")
    assert out["id"].tolist() == list(range(1, 1501))
    expected = [s["prediction"] for s in served(services["sales"], spec.schema.records(rows))]
    assert out["prediction"].tolist() == expected  # identical, not merely close
    assert set(out["model"]) == {production_tag}
    assert (tmp_path / "out" / "_SUCCESS").is_file()
    assert json.loads((tmp_path / "out" / "manifest.json").read_text()) == manifest
    assert manifest["model"] == production_tag
    assert manifest["runtime"] == "compiled"
    assert manifest["rows"] == {"in": 1500, "scored": 1500, "rejected": 0}
    assert manifest["input"]["bytes"] == (tmp_path / "sales.parquet").stat().st_size
    assert len(manifest["input"]["sha256"]) == 64
    assert set(manifest["timings"]) >= {
        "spark_start_s",
        "score_and_write_s",
        "python_scoring_s",
        "python_tasks_s",
        "total_s",
    }
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no staging left


def test_batch_labels_and_probabilities_equal_the_running_cancer_services(
    session, services, cancer_tag, tmp_path
):
    spec = get_spec("cancer")
    rows = spec.default_data(42).head(200)
    rows.to_csv(tmp_path / "cancer.csv", index=False)

    manifest = score(tmp_path, tmp_path / "cancer.csv", cancer_tag)

    out = pd.read_parquet(tmp_path / "out" / "predictions").sort_values("id")
    answers = served(services["cancer"], spec.schema.records(rows))
    assert manifest["rows"] == {"in": 200, "scored": 200, "rejected": 0}
    assert out["prediction"].astype(str).tolist() == [str(a["prediction"]) for a in answers]
    for cls in answers[0]["probabilities"]:
        got = out[f"probability_{cls}"].tolist()
        assert got == [a["probabilities"][cls] for a in answers]


def test_invalid_rows_go_to_rejects_with_their_key_and_reason_and_the_rest_are_scored(
    session, production_tag, tmp_path
):
    rows = get_spec("sales").default_data(42).head(40).astype({"class": object, "family": object})
    rows.insert(0, "row_key", [f"k{i}" for i in range(40)])
    rows.loc[3, "class"] = "abc"
    rows.loc[5, "family"] = "NOT A FAMILY"
    rows.loc[7, "date"] = None
    rows.to_csv(tmp_path / "bad.csv", index=False)

    manifest = score(tmp_path, tmp_path / "bad.csv", production_tag, key="row_key")

    rejects = pd.read_parquet(tmp_path / "out" / "rejects").sort_values("id")
    scored = pd.read_parquet(tmp_path / "out" / "predictions")
    assert manifest["rows"] == {"in": 40, "scored": 37, "rejected": 3}
    assert rejects["id"].tolist() == ["k3", "k5", "k7"]
    assert rejects["field"].tolist() == ["class", "family", "date"]
    assert "expected an integer from 0 to 99999, got a string 'abc'" in rejects["reason"].iloc[0]
    assert "got a string 'NOT A FAMILY'" in rejects["reason"].iloc[1]
    assert "got null" in rejects["reason"].iloc[2]
    assert sorted(scored["id"].tolist() + rejects["id"].tolist()) == sorted(rows["row_key"])


def test_a_parquet_key_column_keeps_its_type_in_predictions_and_rejects(
    session, production_tag, tmp_path
):
    rows = get_spec("sales").default_data(42).head(30).astype({"family": object})
    rows.insert(0, "store_item", pd.array(range(1000, 1030), dtype="int32"))
    rows.loc[4, "family"] = "NOT A FAMILY"
    rows.to_parquet(tmp_path / "keyed.parquet", index=False)

    manifest = score(tmp_path, tmp_path / "keyed.parquet", production_tag, key="store_item")

    scored = pd.read_parquet(tmp_path / "out" / "predictions")
    rejects = pd.read_parquet(tmp_path / "out" / "rejects")
    assert manifest["rows"] == {"in": 30, "scored": 29, "rejected": 1}
    assert str(scored["id"].dtype) == str(rejects["id"].dtype) == "int32"
    assert rejects["id"].tolist() == [1004] and rejects["field"].tolist() == ["family"]
    assert sorted(scored["id"]) == [i for i in range(1000, 1030) if i != 1004]


def test_an_input_without_rows_gives_empty_readable_outputs_and_a_success_marker(
    session, production_tag, tmp_path
):
    get_spec("sales").default_data(42).head(0).to_parquet(tmp_path / "none.parquet", index=False)

    manifest = score(tmp_path, tmp_path / "none.parquet", production_tag)

    assert manifest["rows"] == {"in": 0, "scored": 0, "rejected": 0}
    assert list(pd.read_parquet(tmp_path / "out" / "predictions").columns) == [
        "id",
        "prediction",
        "model",
    ]
    assert len(pd.read_parquet(tmp_path / "out" / "rejects")) == 0
    assert (tmp_path / "out" / "_SUCCESS").is_file()


def test_input_without_a_feature_column_is_refused_naming_it_and_nothing_is_written(
    session, production_tag, tmp_path
):
    get_spec("sales").default_data(42).head(5).drop(columns="family").to_csv(
        tmp_path / "no-family.csv", index=False
    )

    with pytest.raises(job.UsageError, match="lacks the model's feature column\\(s\\) 'family'"):
        score(tmp_path, tmp_path / "no-family.csv", production_tag)

    assert sorted(p.name for p in tmp_path.iterdir()) == ["no-family.csv"]


def test_a_list_column_where_a_feature_is_due_is_refused_naming_it_and_nothing_is_written(
    session, production_tag, tmp_path
):
    data = get_spec("sales").default_data(42).head(5)
    data["class"] = [[1, 2]] * 5
    data.to_parquet(tmp_path / "lists.parquet", index=False)

    with pytest.raises(job.UsageError, match="column 'class' is list<element: int64>"):
        score(tmp_path, tmp_path / "lists.parquet", production_tag)

    assert sorted(p.name for p in tmp_path.iterdir()) == ["lists.parquet"]


def test_an_existing_output_folder_is_refused_and_left_as_it_was(production_tag, tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("earlier job")
    (tmp_path / "in.csv").write_text("date\n")

    with pytest.raises(job.UsageError, match=r"OUT=.* exists"):
        score(tmp_path, tmp_path / "in.csv", production_tag)

    assert [p.name for p in (tmp_path / "out").iterdir()] == ["keep.txt"]


def test_an_output_folder_under_a_file_is_refused_naming_the_file(production_tag, tmp_path):
    (tmp_path / "in.csv").write_text("date\n")
    (tmp_path / "scores").write_text("a file")
    request = job.Request("test", tmp_path / "in.csv", tmp_path / "scores" / "x", "local[2]")

    with pytest.raises(job.UsageError, match=r"OUT=.*/scores/x: .*/scores is a file, not a folder"):
        job.run(request, Settings(model_tag=production_tag, batch_dir=tmp_path / "batch"))


def test_rows_of_a_folder_are_numbered_in_file_name_order_then_file_order_whatever_the_sizes(
    session, production_tag, tmp_path
):
    data = get_spec("sales").default_data(42)
    folder = tmp_path / "in"
    folder.mkdir()
    data.head(3).to_csv(folder / "a.csv", index=False)  # small: Spark reads it last
    data.iloc[3:2003].to_csv(folder / "b.csv", index=False)

    manifest = score(tmp_path, folder, production_tag)

    out = pd.read_parquet(tmp_path / "out" / "predictions").sort_values("id")
    assert manifest["rows"] == {"in": 2003, "scored": 2003, "rejected": 0}
    assert out["id"].tolist() == list(range(1, 2004))
    by_row = out.set_index("id")["prediction"]
    answer = score(
        tmp_path / "one", _single(tmp_path, data.iloc[[0, 1, 2, 3, 2002]]), production_tag
    )
    assert answer["rows"]["scored"] == 5
    expected = pd.read_parquet(tmp_path / "one" / "out" / "predictions").sort_values("id")
    assert by_row.loc[[1, 2, 3, 4, 2003]].tolist() == expected["prediction"].tolist()


def _single(tmp_path, rows: pd.DataFrame):
    (tmp_path / "one").mkdir()
    rows.to_csv(tmp_path / "one" / "rows.csv", index=False)
    return tmp_path / "one" / "rows.csv"

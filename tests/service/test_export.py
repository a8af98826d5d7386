"""GET /v1/experiments/{id}/export.{csv,parquet}: every recorded point, exactly, in long form."""

from __future__ import annotations

import io
import json

import pandas as pd
import pyarrow.parquet as pq
import pytest

from service.export import COLUMNS, write_table
from tests.service.results_support import cluster_spec, open_results


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    for r in open_results(tmp_path_factory.mktemp("export")):
        r.submit("two_seeds", cluster_spec(seeds=[0, 5]))
        r.submit("queued", cluster_spec(), run=False)
        yield r


def _stored(results, label: str) -> list[tuple]:
    points = results.store.get_metrics(results.ids[label])
    return sorted((p.name, p.seed, p.step, p.value) for pts in points.values() for p in pts)


def test_csv_export_holds_every_stored_point_exactly(results):
    response = results.client.get(f"/v1/experiments/{results.ids['two_seeds']}/export.csv")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    frame = pd.read_csv(io.StringIO(response.text))
    assert list(frame.columns) == COLUMNS
    assert (frame["experiment_id"] == results.ids["two_seeds"]).all()
    rows = sorted(frame[["name", "seed", "step", "value"]].itertuples(index=False, name=None))
    stored = _stored(results, "two_seeds")
    assert len(rows) == len(stored) > 100
    assert rows == stored  # float64 text round-trips exactly
    assert set(frame["seed"]) == {0, 5}


def test_parquet_export_has_the_same_rows_and_the_spec_and_summary_as_metadata(results):
    experiment_id = results.ids["two_seeds"]
    response = results.client.get(f"/v1/experiments/{experiment_id}/export.parquet")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/vnd.apache.parquet"
    table = pq.read_table(io.BytesIO(response.content))
    frame = table.to_pandas()
    assert list(frame.columns) == COLUMNS
    assert str(frame["value"].dtype) == "float64" and str(frame["step"].dtype) == "int64"
    assert sorted(frame[["name", "seed", "step", "value"]].itertuples(index=False, name=None)) \
        == _stored(results, "two_seeds")
    meta = table.schema.metadata
    info = results.client.get(f"/v1/experiments/{experiment_id}").json()
    assert json.loads(meta[b"advlab.spec"]) == info["spec"]
    assert json.loads(meta[b"advlab.summary"]) == info["summary"]


def test_a_queued_experiment_exports_the_header_only(results):
    response = results.client.get(f"/v1/experiments/{results.ids['queued']}/export.csv")
    assert response.status_code == 200
    assert response.text.strip() == ",".join(COLUMNS)
    empty = results.client.get(f"/v1/experiments/{results.ids['queued']}/export.parquet")
    assert pq.read_table(io.BytesIO(empty.content)).num_rows == 0


def test_unknown_experiment_is_404_and_unknown_format_422(results):
    assert results.client.get("/v1/experiments/nope/export.csv").status_code == 404
    response = results.client.get(f"/v1/experiments/{results.ids['two_seeds']}/export.xlsx")
    assert response.status_code == 422


def test_write_table_refuses_an_unknown_format():
    with pytest.raises(ValueError, match="xlsx"):
        write_table(pd.DataFrame(columns=COLUMNS), "xlsx")

"""What schemathesis found, pinned as plain tests (each was a 500 or an undocumented code):
an undecodable body, integers past the store's 32-bit columns, and a NUL character that
PostgreSQL cannot hold."""

from __future__ import annotations

import pytest

from devtools.services import throwaway_pg_database
from tests.service.api_support import run_fake_worker, spec


def test_a_body_that_is_not_utf8_is_a_422_json_invalid_not_a_400(make_api):
    api = make_api()
    response = api.client.post("/v1/experiments", content=b'{"name": "\xff\xfe"}',
                               headers={"Content-Type": "application/json"})
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["type"] == "json_invalid"
    assert api.rows() == 0


@pytest.mark.parametrize("path", ["metrics?seed={big}", "correlations?since_step={big}",
                                  "correlations?step={big}&name=cosine/cluster"])
def test_an_integer_past_32_bits_is_a_422_naming_the_parameter(make_api, path):
    api = make_api()
    experiment_id = api.client.post("/v1/experiments", json=spec()).json()["id"]
    run_fake_worker(api.store, experiment_id)
    response = api.client.get(f"/v1/experiments/{experiment_id}/{path.format(big=2**63)}")
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"][0] == "query"
    ok = api.client.get(f"/v1/experiments/{experiment_id}/{path.format(big=2**31 - 1)}")
    assert ok.status_code in (200, 404), ok.text  # the largest storable value is accepted


@pytest.fixture
def pg_database(pg_url):
    with throwaway_pg_database("advlab_findings", pg_url) as url:
        yield url


@pytest.mark.postgres
def test_a_nul_character_on_postgresql_is_a_422_and_the_next_request_works(
        make_api, pg_database):
    api = make_api(pg_database)
    experiment_id = api.client.post("/v1/experiments", json=spec()).json()["id"]
    run_fake_worker(api.store, experiment_id)
    for bad in (f"/v1/experiments/{experiment_id}/metrics?names=%00",
                "/v1/experiments?name=a%00b", "/v1/experiments?tag=%00"):
        response = api.client.get(bad)
        assert response.status_code == 422, (bad, response.text)
        assert response.json()["detail"][0]["type"] == "value_error.unstorable"
    submitted = api.client.post("/v1/experiments", json=spec(name="nul \u0000 inside"))
    assert submitted.status_code == 422, submitted.text
    good = api.client.get(f"/v1/experiments/{experiment_id}/metrics?names=train/loss")
    assert good.status_code == 200 and good.json()["series"]


@pytest.mark.parametrize("binary", [[], [[1, 2]], [[], [3]], [[1, 2], [2, 3]], [[1], [12]]])
def test_a_malformed_image_binary_map_is_a_422_under_data_binary(make_api, binary):
    api = make_api()
    response = api.client.post("/v1/experiments",
                               json={"data": {"kind": "image", "binary": binary}})
    assert response.status_code == 422, response.text
    assert any(error["loc"][:3] == ["body", "data", "image"] or "binary" in error["loc"]
               or "binary" in error["msg"] for error in response.json()["detail"]), response.text
    assert api.rows() == 0


@pytest.mark.parametrize("learner", ["cnn", "resnet18"])
@pytest.mark.parametrize("dry_run", [False, True])
def test_a_convolutional_learner_on_vector_data_is_a_422_not_a_500(make_api, learner,  # noqa: F811
                                                                    dry_run):
    """It was priced (and would have run) on (d,) inputs: the estimate crashed with a 500."""
    api = make_api()
    response = api.client.post(f"/v1/experiments?dry_run={str(dry_run).lower()}",
                               json={"device": "cpu", "learner": {"kind": learner}})
    assert response.status_code == 422, response.text
    assert "needs data kind 'image'" in response.json()["detail"][0]["msg"]
    assert api.rows() == 0

"""Bad inputs get the documented status and a message naming the field, and none of them leaves
a row in the store or a message in the broker (real app, real migrated SQLite, real broker)."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

# fixtures (make_api, migrated_sqlite) are imported so that pytest registers them
from tests.service.api_support import SMALL_SPEC, make_settings, run_fake_worker, spec

LIMITS = {"max_d": 100, "max_width": 50, "max_samples": 1000, "max_epochs": 200,
          "max_radii": 3, "max_seeds": 4, "max_body_bytes": 4096}


@pytest.fixture(scope="module")
def api(make_module_api):
    """One app for the module: every test using it must write nothing (and checks so)."""
    return make_module_api(**LIMITS)


@pytest.fixture
def fresh_api(make_api):
    """An app of its own, for tests that create experiments."""
    return make_api(**LIMITS)


def assert_nothing_written(api):
    assert api.rows() == 0
    assert api.messages() == []
    assert api.enqueue_log == []


def post_raw(api, content: bytes | str, **headers):
    return api.client.post("/v1/experiments", content=content,
                           headers={"content-type": "application/json", **headers})


def test_malformed_json_is_422_saying_so(api):
    r = post_raw(api, '{"name": "x", "data": {"kind": "multi_cluster", "d": 20,,}}')
    assert r.status_code == 422
    [err] = r.json()["detail"]
    assert err["type"] == "json_invalid" and err["loc"] == ["body"]
    assert err["msg"].startswith("malformed JSON at character")
    assert_nothing_written(api)


def test_a_body_that_is_not_an_object_is_422(api):
    r = post_raw(api, "[1, 2]")
    assert r.status_code == 422
    [err] = r.json()["detail"]
    assert err["loc"] == ["body"] and "must be a JSON object" in err["msg"]
    assert_nothing_written(api)


def test_an_empty_body_is_422_saying_what_to_send(api):
    r = post_raw(api, b"")
    assert r.status_code == 422
    assert "request body is empty" in r.json()["detail"][0]["msg"]
    assert_nothing_written(api)


@pytest.mark.parametrize("content_type", [None, "application/x-www-form-urlencoded"])
def test_a_body_not_sent_as_json_is_415(api, content_type):
    headers = {} if content_type is None else {"content-type": content_type}
    r = api.client.post("/v1/experiments", content=json.dumps(SMALL_SPEC), headers=headers)
    assert r.status_code == 415
    assert "Content-Type: application/json" in r.json()["detail"]
    assert_nothing_written(api)


@pytest.mark.parametrize("body, loc", [
    ({**SMALL_SPEC, "colour": "red"}, ["body", "colour"]),
    (spec(**{"data.dimension": 3}), ["body", "data", "dimension"]),
    (spec(**{"evaluation.attacks": [{"kind": "pgd", "radius": 1}]}),
     ["body", "evaluation", "attacks", 0, "radius"]),
])
def test_unknown_field_is_422_with_its_json_path(api, body, loc):
    r = api.client.post("/v1/experiments", json=body)
    assert r.status_code == 422
    [err] = r.json()["detail"]
    assert (err["loc"], err["type"]) == (loc, "extra_forbidden")
    assert ".".join(map(str, loc[1:])) in err["msg"]
    assert_nothing_written(api)


@pytest.mark.parametrize("change, loc, err_type", [
    ({"training.epochs": "many"}, ["body", "training", "epochs"], "int_parsing"),
    ({"data.d": 2.5}, ["body", "data", "d"], "int_from_float"),
    ({"tags": "x"}, ["body", "tags"], "list_type"),
    ({"evaluation.attacks": [{"radii": [1, "far"]}]},
     ["body", "evaluation", "attacks", 0, "radii", 1], "float_parsing"),
    ({"data.kind": "spiral"}, ["body", "data"], "union_tag_invalid"),
])
def test_wrong_type_is_422_with_its_json_path(api, change, loc, err_type):
    r = api.client.post("/v1/experiments", json=spec(**change))
    assert r.status_code == 422
    errors = r.json()["detail"]
    assert [loc] == [e["loc"] for e in errors]
    assert errors[0]["type"] == err_type
    assert_nothing_written(api)


def test_a_missing_kind_is_422_listing_the_kinds(api):
    r = api.client.post("/v1/experiments", json={**SMALL_SPEC, "data": {"d": 20}})
    assert r.status_code == 422
    [err] = r.json()["detail"]
    assert err["loc"] == ["body", "data"]
    assert "missing `kind`: one of multi_cluster, patch" in err["msg"]
    assert_nothing_written(api)


def test_a_union_field_gets_one_error_at_its_path_naming_every_alternative(api):
    r = api.client.post("/v1/experiments",
                        json=spec(**{"evaluation.attacks": [{"step_size": "fast"}]}))
    assert r.status_code == 422
    [err] = r.json()["detail"]
    assert err["loc"] == ["body", "evaluation", "attacks", 0, "step_size"]
    assert "'auto'" in err["msg"] and "valid number" in err["msg"]
    assert_nothing_written(api)


@pytest.mark.parametrize("change, loc", [
    ({"data.d": -3}, ["body", "data", "d"]),
    ({"data.n_train": 0}, ["body", "data", "n_train"]),
    ({"learner.width": -1}, ["body", "learner", "width"]),
    ({"training.epochs": 0}, ["body", "training", "epochs"]),
    ({"training.optimizer.lr": -0.1}, ["body", "training", "optimizer", "lr"]),
])
def test_negative_or_zero_size_is_422_with_its_json_path(api, change, loc):
    r = api.client.post("/v1/experiments", json=spec(**change))
    assert r.status_code == 422
    [err] = r.json()["detail"]
    assert err["loc"] == loc
    assert err["type"] in ("greater_than_equal", "greater_than")
    assert_nothing_written(api)


def test_a_cross_field_rule_is_422_naming_the_object(api):
    r = api.client.post("/v1/experiments", json=spec(**{"data.k": 30}))  # k > d
    assert r.status_code == 422
    [err] = r.json()["detail"]
    assert err["loc"] == ["body", "data"] and "k must be <= d" in err["msg"]
    assert_nothing_written(api)


@pytest.mark.parametrize("change, limit, loc", [
    ({"data.d": 101}, "max_d", ["body", "data", "d"]),
    ({"learner.width": 51}, "max_width", ["body", "learner", "width"]),
    ({"data.n_train": 900, "data.n_test": 101}, "max_samples", ["body", "data", "n_train"]),
    ({"training.epochs": 201}, "max_epochs", ["body", "training", "epochs"]),
    ({"evaluation.attacks": [{"radii": [1, 2, 3, 4]}]}, "max_radii",
     ["body", "evaluation", "attacks", 0, "radii"]),
    ({"seeds": [1, 2, 3, 4, 5]}, "max_seeds", ["body", "seeds"]),
])
def test_over_limit_spec_is_413_naming_the_limit(api, change, limit, loc):
    r = api.client.post("/v1/experiments", json=spec(**change))
    assert r.status_code == 413
    [err] = r.json()["detail"]
    assert err["loc"] == loc
    assert err["type"] == f"limit.{limit}"
    assert f"{limit} = {LIMITS[limit]}" in err["msg"] and f"ADVLAB_{limit.upper()}" in err["msg"]
    assert_nothing_written(api)


def test_a_spec_at_the_limits_is_accepted(fresh_api):
    body = spec(**{"data.d": 100, "learner.width": 50, "data.n_train": 900, "data.n_test": 100,
                   "training.epochs": 200, "seeds": [1, 2, 3, 4]})
    assert fresh_api.client.post("/v1/experiments", json=body).status_code == 202


def test_oversize_body_is_413_before_it_is_parsed(api):
    body = b'{"name": "' + b"x" * 5000 + b'", not json at all'
    r = post_raw(api, body)
    assert r.status_code == 413
    assert "max_body_bytes = 4096" in r.json()["detail"]
    assert_nothing_written(api)


def test_oversize_streamed_body_without_content_length_is_413(api):
    def chunks():
        for _ in range(10):
            yield b" " * 1000
        yield json.dumps(SMALL_SPEC).encode()

    r = api.client.post("/v1/experiments", content=chunks(),
                        headers={"content-type": "application/json"})
    assert r.status_code == 413
    assert "max_body_bytes" in r.json()["detail"]
    assert_nothing_written(api)


def test_a_lying_content_length_cannot_smuggle_a_large_body():
    from service.errors import BodyLimitMiddleware

    # below the ASGI server a client could declare less than it sends: count the bytes anyway
    sent = []

    async def app(scope, receive, send):  # the wrapped app must never be reached
        sent.append(await receive())

    limit = BodyLimitMiddleware(app, max_bytes=100)
    messages = [{"type": "http.request", "body": b"x" * 80, "more_body": True},
                {"type": "http.request", "body": b"x" * 80, "more_body": False}]
    responses = []

    async def receive():
        return messages.pop(0)

    async def send(message):
        responses.append(message)

    import asyncio

    scope = {"type": "http", "method": "POST", "headers": [(b"content-length", b"10")]}
    asyncio.run(limit(scope, receive, send))
    assert sent == [] and responses[0]["status"] == 413


@pytest.mark.parametrize("method, path", [
    ("GET", "/v1/experiments/{id}"), ("DELETE", "/v1/experiments/{id}"),
    ("POST", "/v1/experiments/{id}/cancel"), ("POST", "/v1/experiments/{id}/retry"),
    ("GET", "/v1/experiments/{id}/metrics"), ("GET", "/v1/experiments/{id}/correlations"),
])
def test_unknown_id_is_404_naming_it(api, method, path):
    r = api.client.request(method, path.format(id="no-such-id"))
    assert r.status_code == 404
    assert "no-such-id" in r.json()["detail"]
    assert_nothing_written(api)


def test_cancel_of_a_finished_job_is_409(fresh_api):
    eid = fresh_api.client.post("/v1/experiments", json=SMALL_SPEC).json()["id"]
    run_fake_worker(fresh_api.store, eid)
    r = fresh_api.client.post(f"/v1/experiments/{eid}/cancel")
    assert r.status_code == 409
    assert fresh_api.client.get(f"/v1/experiments/{eid}").json()["status"] == "succeeded"


def test_cancel_twice_is_409_the_second_time(fresh_api):
    eid = fresh_api.client.post("/v1/experiments", json=SMALL_SPEC).json()["id"]
    assert fresh_api.client.post(f"/v1/experiments/{eid}/cancel").status_code == 200
    assert fresh_api.client.post(f"/v1/experiments/{eid}/cancel").status_code == 409


@pytest.mark.parametrize("params, loc", [
    ({"max_points": 1}, ["query", "max_points"]),
    ({"since_step": -1}, ["query", "since_step"]),
    ({"seed": "x"}, ["query", "seed"]),
])
def test_bad_query_parameter_is_422_naming_it(fresh_api, params, loc):
    eid = fresh_api.client.post("/v1/experiments", json=SMALL_SPEC).json()["id"]
    r = fresh_api.client.get(f"/v1/experiments/{eid}/metrics", params=params)
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == loc


def test_bad_list_filter_is_422_naming_it(api):
    r = api.client.get("/v1/experiments", params={"status": "sleeping"})
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["query", "status", 0]


@pytest.mark.parametrize("params, loc, err_type", [
    ({"cursor": "not-a-cursor"}, ["query", "cursor"], "invalid_cursor"),
    ({"spec.data.dimension": "3"}, ["query", "spec.data.dimension"], "unknown_spec_field"),
    ({"order": "sideways"}, ["query", "order"], "literal_error"),
    ({"limit": 0}, ["query", "limit"], "greater_than_equal"),
])
def test_bad_list_parameter_is_422_naming_it(api, params, loc, err_type):
    r = api.client.get("/v1/experiments", params=params)
    assert r.status_code == 422
    [err] = r.json()["detail"]
    assert (err["loc"], err["type"]) == (loc, err_type)


def test_health_is_503_naming_an_unreachable_broker(make_api):
    api = make_api(broker_url="redis://127.0.0.1:1/0")  # nothing listens on port 1
    r = api.client.get("/v1/health")
    assert r.status_code == 503
    body = r.json()
    assert (body["status"], body["database"]) == ("degraded", "ok")
    assert body["broker"].startswith("error:") and "127.0.0.1:1" in body["broker"]


def test_enqueue_failure_still_answers_202_and_leaves_the_row_queued(tmp_path):
    from service.main import create_app
    from lab.store.migrate import upgrade

    settings = make_settings(tmp_path)
    upgrade("head", settings.resolved_database_url)
    (tmp_path / "broker").write_text("a file where the broker folder should be")
    with TestClient(create_app(settings)) as client:
        r = client.post("/v1/experiments", json=SMALL_SPEC)
        assert r.status_code == 202
        got = client.get(f"/v1/experiments/{r.json()['id']}").json()
        assert got["status"] == "queued"  # the reaper re-sends queued rows nobody picked up


def test_the_app_refuses_to_start_on_an_unmigrated_database(tmp_path):
    from service.main import create_app
    from lab.store.base import SchemaOutOfDate

    app = create_app(make_settings(tmp_path))
    with pytest.raises(SchemaOutOfDate):
        with TestClient(app):
            pass


@pytest.mark.parametrize("attack, loc, says", [
    ({"kind": "autoattack", "radii": [0.1], "steps": 20000},
     ["body", "evaluation", "attacks", 0, "steps"], "less than or equal to 10000"),
    ({"kind": "apgd", "radii": [0.1], "restarts": 500},
     ["body", "evaluation", "attacks", 0, "restarts"], "less than or equal to 100"),
    ({"kind": "apgd", "radii": [0.1], "targeted": True, "loss": "ce"},
     ["body", "evaluation", "attacks", 0], "targeted apgd (APGD-T) uses loss 'dlr'"),
    ({"kind": "autoattack", "radii": [0.1], "loss": "ce"},
     ["body", "evaluation", "attacks", 0], "autoattack's losses are fixed"),
    ({"kind": "pgd", "radii": [0.1], "loss": "dlr"},
     ["body", "evaluation", "attacks", 0], "loss 'dlr' is APGD's"),
])
def test_a_bad_apgd_attack_is_422_naming_the_attack(api, attack, loc, says):
    r = api.client.post("/v1/experiments", json=spec(**{"evaluation.attacks": [attack]}))
    assert r.status_code == 422
    [err] = r.json()["detail"]
    assert err["loc"] == loc and says in err["msg"]
    assert_nothing_written(api)


def test_autoattack_is_refused_as_the_training_adversary(api):
    body = spec(**{"training.mode": "adversarial",
                   "training.adversary": {"kind": "autoattack", "radii": [0.1]}})
    r = api.client.post("/v1/experiments", json=body)
    assert r.status_code == 422
    [err] = r.json()["detail"]
    assert err["loc"] == ["body", "training"] and "'apgd'" in err["msg"]
    assert_nothing_written(api)

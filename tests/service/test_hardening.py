"""Hardening: strict JSON (NaN/Infinity, overflowing numbers, duplicate keys → 422), the body
cap, CORS off by default, security headers, X-Request-ID, the token-failure rate limit, and
structured logs with request/experiment ids and no secrets."""

from __future__ import annotations

import io
import json
import logging

import pytest

from service.auth import generate_token, hash_token
from service.failure_limiter import FailureLimiter
from lab.logging import JsonFormatter, RedactFilter
from tests.service.api_support import spec

JSON = {"Content-Type": "application/json"}


@pytest.mark.parametrize("raw, loc, why", [
    ('{"data": {"kind": "multi_cluster", "sigma": NaN}}', ["data", "sigma"], "NaN"),
    ('{"data": {"kind": "multi_cluster", "sigma": Infinity}}', ["data", "sigma"], "Infinity"),
    ('{"training": {"optimizer": {"kind": "gd", "lr": -Infinity}}}',
     ["training", "optimizer", "lr"], "-Infinity"),
    ('{"data": {"kind": "multi_cluster", "sigma": 1e999}}', ["data", "sigma"], "out of range"),
    ('{"seed": 1, "seed": 2}', [], "duplicate key 'seed'"),
])
def test_non_strict_json_in_a_spec_is_422_at_its_path_and_stores_nothing(make_api, raw, loc,
                                                                          why):
    api = make_api()
    response = api.client.post("/v1/experiments", content=raw, headers=JSON)
    assert response.status_code == 422, response.text
    detail = response.json()["detail"][0]
    assert why in detail["msg"] and detail["loc"] == ["body", *loc]
    assert api.rows() == 0 and api.messages() == []


def test_strict_json_also_guards_untyped_values_such_as_sweep_grids(make_api):
    api = make_api()
    raw = '{"name": "s", "base": {}, "grid": {"data.sigma": [1.0, NaN]}}'
    response = api.client.post("/v1/sweeps", content=raw, headers=JSON)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "grid", "data.sigma", 1]
    assert api.rows() == 0


def test_a_finite_spec_still_passes_and_malformed_json_keeps_its_positioned_error(make_api):
    api = make_api()
    assert api.client.post("/v1/experiments", content=json.dumps(spec()),
                           headers=JSON).status_code == 202
    broken = api.client.post("/v1/experiments", content='{"seed": ', headers=JSON)
    assert broken.status_code == 422 and "malformed JSON" in broken.json()["detail"][0]["msg"]


def test_a_body_over_the_cap_is_413(make_api):
    api = make_api(max_body_bytes=1000)
    response = api.client.post("/v1/experiments", content=b"{" + b" " * 2000 + b"}",
                               headers=JSON)
    assert response.status_code == 413 and "max_body_bytes" in response.json()["detail"]


def test_cors_is_off_by_default_and_on_for_configured_origins_only(make_api):
    preflight = {"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
    off = make_api().client.options("/v1/experiments", headers=preflight)
    assert "access-control-allow-origin" not in off.headers
    api = make_api(cors_origins="https://lab.example")
    allowed = api.client.options("/v1/experiments", headers={
        **preflight, "Origin": "https://lab.example"})
    assert allowed.headers["access-control-allow-origin"] == "https://lab.example"
    other = api.client.get("/v1/experiments", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in other.headers


def test_api_responses_carry_security_headers_and_the_dashboard_keeps_its_csp(make_api):
    api = make_api()
    for path in ("/v1/experiments", "/v1/experiments/" + "0" * 32, "/v1/health"):
        headers = api.client.get(path).headers
        assert headers["x-content-type-options"] == "nosniff", path
        assert headers["x-frame-options"] == "DENY" and headers["referrer-policy"] == "no-referrer"
    assert "content-security-policy" in api.client.get("/").headers


def test_x_request_id_is_echoed_when_valid_and_generated_otherwise(make_api):
    client = make_api().client
    assert client.get("/v1/experiments", headers={"X-Request-ID": "abc-123"}).headers[
        "x-request-id"] == "abc-123"
    made = client.get("/v1/experiments").headers["x-request-id"]
    bad = client.get("/v1/experiments", headers={"X-Request-ID": "x" * 300}).headers[
        "x-request-id"]
    assert len(made) == 32 and len(bad) == 32 and made != bad


def test_a_repeated_bad_token_gets_429_but_a_good_token_from_the_same_address_does_not(make_api):
    api = make_api(auth="tokens", auth_failures_per_minute=3)
    api.store.create_user("alice")
    good = generate_token()
    api.store.create_token("alice", hash_token(good))
    bad = {"Authorization": "Bearer advlab_guess-000000000000000000000"}
    codes = [api.client.get("/v1/experiments", headers=bad).status_code for _ in range(4)]
    assert codes == [401, 401, 401, 429]
    assert 0 < int(api.client.get("/v1/experiments", headers=bad).headers["Retry-After"]) <= 60
    other_prefix = {"Authorization": "Bearer advlab_other-000000000000000000000"}
    assert api.client.get("/v1/experiments", headers=other_prefix).status_code == 401
    valid = api.client.get("/v1/experiments", headers={"Authorization": f"Bearer {good}"})
    assert valid.status_code == 200


@pytest.mark.redis
def test_the_redis_limiter_is_shared_by_two_api_processes(make_api, redis_url):
    first = make_api(auth="tokens", auth_failures_per_minute=3, limiter_url=redis_url)
    second = make_api(auth="tokens", auth_failures_per_minute=3, limiter_url=redis_url)
    bad = {"Authorization": f"Bearer {generate_token()}"}  # a fresh prefix: a fresh Redis key
    codes = [api.client.get("/v1/experiments", headers=bad).status_code
             for api in (first, second, first, second)]
    assert codes == [401, 401, 401, 429]


def test_failure_limiter_forgets_failures_older_than_a_minute():
    now = [1000.0]
    limiter = FailureLimiter(2, clock=lambda: now[0])
    limiter.record("ip")
    now[0] += 30
    limiter.record("ip")
    assert limiter.retry_after("ip") == 30  # the first failure leaves the window in 30 s
    now[0] += 30
    assert limiter.retry_after("ip") is None
    assert limiter.retry_after("other") is None


@pytest.fixture
def json_log():
    """The real filter and formatter on an extra handler of the `advlab` logger."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactFilter())
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("advlab")
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    logger.removeHandler(handler)
    logger.setLevel(old_level)


def test_access_log_lines_are_json_with_request_and_experiment_ids_and_no_token(make_api,
                                                                              json_log):
    api = make_api(auth="tokens")
    api.store.create_user("alice")
    token = generate_token()
    api.store.create_token("alice", hash_token(token))
    auth = {"Authorization": f"Bearer {token}", "X-Request-ID": "req-42"}
    eid = api.client.post("/v1/experiments", json=spec(), headers=auth).json()["id"]
    api.client.get(f"/v1/experiments/{eid}", headers={**auth, "X-Request-ID": "req-43"})
    api.client.get("/v1/experiments", headers={"Authorization": "Bearer advlab_wrong-token-xyz"})
    lines = [l for l in json_log() if l["logger"] == "advlab.access"]
    by_id = {l.get("request_id"): l for l in lines}
    assert by_id["req-42"]["status"] == 202 and by_id["req-42"]["user"] == "alice"
    assert by_id["req-43"]["experiment_id"] == eid and by_id["req-43"]["path"].endswith(eid)
    assert any(l["status"] == 401 for l in lines)
    text = json.dumps(json_log())
    assert token not in text and "wrong-token" not in text


def test_secrets_logged_by_anyone_are_redacted(json_log):
    token = generate_token()
    logging.getLogger("advlab.api").warning("client sent Authorization: Bearer %s", token)
    logging.getLogger("advlab.api").info("headers %s", {"authorization": f"Bearer {token}"})
    logging.getLogger("advlab.api").info("token %s leaked", token)
    text = json.dumps(json_log())
    assert token not in text and text.count("[REDACTED]") >= 3

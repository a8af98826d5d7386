"""Quotas (429 + Retry-After, then success once jobs end), bounded priorities, queue routing by
the spec's device, and the store's fair claim (one user's flood cannot starve another)."""

from __future__ import annotations

import json
import uuid

import pytest

from service.auth import generate_token, hash_token
from tests.service.api_support import run_fake_worker, spec


def _user(api, name: str, admin: bool = False) -> dict[str, str]:
    api.store.create_user(name, is_admin=admin)
    token = generate_token()
    api.store.create_token(name, hash_token(token))
    return {"Authorization": f"Bearer {token}"}


def test_submit_over_the_active_quota_is_429_with_retry_after_then_202_after_a_job_ends(make_api):
    api = make_api(auth="tokens", max_active_per_user=2, quota_retry_after_s=7)
    alice, bob = _user(api, "alice"), _user(api, "bob")
    first = api.client.post("/v1/experiments", json=spec(), headers=alice).json()["id"]
    assert api.client.post("/v1/experiments", json=spec(), headers=alice).status_code == 202
    rows = api.rows()
    over = api.client.post("/v1/experiments", json=spec(), headers=alice)
    assert over.status_code == 429
    assert over.headers["Retry-After"] == "7"
    assert "max_active_per_user = 2" in over.json()["detail"]
    assert api.rows() == rows  # nothing stored, nothing enqueued
    # another user's quota is their own
    assert api.client.post("/v1/experiments", json=spec(), headers=bob).status_code == 202
    # a running job still counts; a finished one does not
    exp = api.store.start_attempt(first, "w")
    assert api.client.post("/v1/experiments", json=spec(), headers=alice).status_code == 429
    api.store.finish(first, exp.attempts, "succeeded", summary={})
    assert api.client.post("/v1/experiments", json=spec(), headers=alice).status_code == 202


def test_an_idempotency_key_replay_is_answered_even_when_the_user_is_at_the_quota(make_api):
    api = make_api(max_active_per_user=1)
    key = {"Idempotency-Key": "k-1"}
    first = api.client.post("/v1/experiments", json=spec(), headers=key)
    assert first.status_code == 202
    replay = api.client.post("/v1/experiments", json=spec(), headers=key)
    assert replay.status_code == 200 and replay.json()["id"] == first.json()["id"]
    assert api.client.post("/v1/experiments", json=spec(),
                           headers={"Idempotency-Key": "k-2"}).status_code == 429


def test_a_sweep_counts_all_its_members_against_the_quota(make_api):
    api = make_api(max_active_per_user=3)
    sweep = {"name": "s", "base": spec(), "grid": {"learner.width": [4, 8, 16, 32]}}
    over = api.client.post("/v1/sweeps", json=sweep)
    assert over.status_code == 429 and "adding 4" in over.json()["detail"]
    assert api.rows() == 0
    sweep["grid"]["learner.width"] = [4, 8, 16]
    assert api.client.post("/v1/sweeps", json=sweep).status_code == 202
    assert api.client.post("/v1/experiments", json=spec()).status_code == 429


def test_retry_counts_against_the_quota(make_api):
    api = make_api(max_active_per_user=1)
    eid = api.client.post("/v1/experiments", json=spec()).json()["id"]
    run_fake_worker(api.store, eid, finish="failed")
    other = api.client.post("/v1/experiments", json=spec()).json()["id"]
    assert api.client.post(f"/v1/experiments/{eid}/retry").status_code == 429
    api.client.post(f"/v1/experiments/{other}/cancel")
    assert api.client.post(f"/v1/experiments/{eid}/retry").status_code == 202


def test_priority_is_bounded_for_users_but_not_for_admins(make_api):
    api = make_api(auth="tokens", max_priority=5)
    alice, root = _user(api, "alice"), _user(api, "root", admin=True)
    ok = api.client.post("/v1/experiments?priority=5", json=spec(), headers=alice)
    assert ok.status_code == 202
    assert api.client.get(ok.headers["Location"], headers=alice).json()["priority"] == 5
    too_high = api.client.post("/v1/experiments?priority=6", json=spec(), headers=alice)
    assert too_high.status_code == 422
    assert too_high.json()["detail"][0]["loc"] == ["query", "priority"]
    assert "ADVLAB_MAX_PRIORITY" in too_high.json()["detail"][0]["msg"]
    assert api.client.post("/v1/experiments?priority=-6", json=spec(),
                           headers=alice).status_code == 422
    assert api.client.post("/v1/experiments?priority=50", json=spec(),
                           headers=root).status_code == 202


def _message_queues(api) -> dict[str, str]:
    """experiment id -> routing key of its message in the filesystem broker."""
    out = {}
    for path in (api.settings.broker_dir / "queue").glob("*.msg"):
        payload = json.loads(path.read_text())
        body = payload["body"]
        if payload["properties"].get("body_encoding") == "base64":
            import base64

            body = base64.b64decode(body).decode()
        out[json.loads(body)[0][0]] = payload["properties"]["delivery_info"]["routing_key"]
    return out


def test_device_cuda_is_routed_to_the_gpu_queue_and_auto_cpu_to_the_default_queue(make_api):
    api = make_api(gpu_queue="gpu")
    ids = {device: api.client.post("/v1/experiments", json=spec(device=device)).json()["id"]
           for device in ("cuda", "cpu", "auto")}
    reads = {d: api.client.get(f"/v1/experiments/{i}").json()["queue"] for d, i in ids.items()}
    assert reads == {"cuda": "gpu", "cpu": api.settings.queue, "auto": api.settings.queue}
    routed = _message_queues(api)
    assert {d: routed[i] for d, i in ids.items()} == reads


def test_sweep_members_are_routed_by_their_own_device(make_api):
    api = make_api(cpu_queue="cpu")
    body = {"name": "s", "base": spec(), "grid": {"device": ["cpu", "cuda"]}}
    created = api.client.post("/v1/sweeps", json=body).json()
    queues = sorted(api.store.get_experiment(e).queue for e in created["experiment_ids"])
    assert queues == ["cpu", "gpu"]


# --------------------------------------------------------------------------- fair claim (store)
# on SQLite and PostgreSQL; the PostgreSQL database is shared by the session, so each test uses
# its own queue and owner names


@pytest.fixture(params=["sqlite", "postgresql"])
def fair(request, make_api):
    url = request.getfixturevalue("pg_url") if request.param == "postgresql" else None
    store = make_api(url).store
    tag = uuid.uuid4().hex[:8]

    def create(owner: str, *, queue: str = "q", priority: int = 0) -> str:
        exp, _ = store.create_experiment(name="x", tags=[], spec={}, spec_hash="h",
                                         total_steps=1, owner=f"{owner}-{tag}",
                                         priority=priority, queue=f"{queue}-{tag}")
        return exp.id

    return store, create


def test_fair_claim_serves_a_single_job_of_a_second_user_right_after_the_floods_first(fair):
    store, create = fair
    flood = [create("a") for _ in range(20)]
    single = create("b")
    started = []
    for message in flood + [single]:  # one message per job, in submission order
        job = store.claim_next(message, "w")
        started.append(job.id)
        store.finish(job.id, job.attempts, "succeeded", summary={})
    assert started[:3] == [flood[0], single, flood[1]]
    assert sorted(started) == sorted(flood + [single])  # every job ran exactly once


def test_fair_claim_prefers_the_user_with_fewer_running_jobs(fair):
    store, create = fair
    a1, a2, b1, b2 = (create(o) for o in ("a", "a", "b", "b"))
    assert store.claim_next(a1, "w1").id == a1  # nobody served yet: the oldest
    assert store.claim_next(a2, "w2").id == b1  # a has one running
    # both have one running; a was served before b: a's next
    assert store.claim_next(b1, "w3").id == a2
    assert store.claim_next(b2, "w4").id == b2
    assert store.claim_next(b2, "w5") is None  # spare message: nothing queued


def test_fair_claim_orders_a_users_own_jobs_by_priority_then_age(fair):
    store, create = fair
    low, high, mid = (create("a", priority=p) for p in (0, 3, 1))
    assert [store.claim_next(low, "w").id for _ in range(3)] == [high, mid, low]


def test_fair_claim_stays_within_the_messages_queue_and_skips_canceled_jobs(fair):
    store, create = fair
    gpu = create("a", queue="gpu")
    canceled = create("a", queue="cpu")
    cpu = create("b", queue="cpu")
    store.request_cancel(canceled)
    assert store.claim_next(canceled, "w").id == cpu  # the canceled job's message is a ticket
    assert store.claim_next(cpu, "w") is None  # the gpu job is not this queue's
    assert store.get_experiment(gpu).status == "queued"
    assert store.claim_next(gpu, "w").id == gpu

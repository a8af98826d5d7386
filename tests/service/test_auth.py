"""ADVLAB_AUTH=tokens: 401 without a valid bearer token on every /v1 route, 403 for another
user's write, 200 for the owner and for admins; reads are lab-shared; tokens are stored hashed.
ADVLAB_AUTH=none: every caller is the admin user `local`."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import pytest

from service.auth import generate_token, hash_token
from tests.service.api_support import Api, spec

SWEEP = {"name": "s", "base": spec(), "grid": {"learner.width": [4, 8]}}


@dataclass
class Lab:
    api: Api
    tokens: dict[str, str]  # user name -> bearer token

    def h(self, user: str | None) -> dict[str, str]:
        return {} if user is None else {"Authorization": f"Bearer {self.tokens[user]}"}

    def submit(self, user: str, body: dict | None = None) -> str:
        response = self.api.client.post("/v1/experiments", json=body or spec(), headers=self.h(user))
        assert response.status_code == 202, response.text
        return response.json()["id"]


@pytest.fixture
def lab(token_api) -> Lab:
    return Lab(*token_api)


def _routes(lab: Lab, eid: str) -> list[tuple[str, str, dict | None]]:
    return [("POST", "/v1/experiments", spec()), ("GET", "/v1/experiments", None),
            ("GET", f"/v1/experiments/{eid}", None), ("GET", f"/v1/experiments/{eid}/metrics", None),
            ("POST", f"/v1/experiments/{eid}/cancel", None),
            ("POST", f"/v1/experiments/{eid}/retry", None),
            ("DELETE", f"/v1/experiments/{eid}", None), ("POST", "/v1/sweeps", SWEEP),
            ("GET", "/v1/sweeps", None)]


@pytest.mark.parametrize("header", [None, "Bearer advlab_not-a-real-token-000000000000",
                                    "Basic YWxpY2U6cHc=", "Bearer "])
def test_every_v1_route_answers_401_with_www_authenticate_without_a_valid_token(lab, header):
    eid = lab.submit("alice")
    rows_before = lab.api.rows()
    for method, path, body in _routes(lab, eid):
        headers = {"Authorization": header} if header else {}
        response = lab.api.client.request(method, path, json=body, headers=headers)
        assert response.status_code == 401, (method, path, response.text)
        assert response.headers["WWW-Authenticate"].startswith('Bearer realm="advlab"')
    assert lab.api.rows() == rows_before  # nothing was created, canceled or deleted
    assert lab.api.store.get_experiment(eid).status == "queued"


def test_health_stays_open_without_a_token_for_probes(lab):
    assert lab.api.client.get("/v1/health").status_code != 401


def test_a_revoked_token_is_refused_at_once(lab):
    token = lab.api.store.list_tokens("bob")[0]
    assert lab.api.client.get("/v1/experiments", headers=lab.h("bob")).status_code == 200
    lab.api.store.revoke_token(token.id)
    response = lab.api.client.get("/v1/experiments", headers=lab.h("bob"))
    assert response.status_code == 401 and 'error="invalid_token"' in response.headers[
        "WWW-Authenticate"]


def test_submit_records_the_caller_as_owner_and_everyone_may_read_it(lab):
    eid = lab.submit("alice")
    for reader in ("alice", "bob", "root"):
        body = lab.api.client.get(f"/v1/experiments/{eid}", headers=lab.h(reader))
        assert body.status_code == 200 and body.json()["owner"] == "alice"


@pytest.mark.parametrize("action", ["cancel", "retry", "delete"])
def test_another_users_write_is_403_and_changes_nothing(lab, action):
    eid = lab.submit("alice")
    if action == "retry":  # only failed or canceled jobs can be retried
        assert lab.api.client.post(f"/v1/experiments/{eid}/cancel",
                                   headers=lab.h("alice")).status_code == 200
    before = lab.api.store.get_experiment(eid)
    rows = lab.api.rows()
    method = "DELETE" if action == "delete" else "POST"
    path = f"/v1/experiments/{eid}" + ("" if action == "delete" else f"/{action}")
    response = lab.api.client.request(method, path, headers=lab.h("bob"))
    assert response.status_code == 403, response.text
    assert "alice" in response.json()["detail"]
    assert lab.api.store.get_experiment(eid) == before and lab.api.rows() == rows


@pytest.mark.parametrize("writer", ["alice", "root"])
def test_the_owner_and_an_admin_may_cancel_retry_and_delete(lab, writer):
    eid = lab.submit("alice")
    client, h = lab.api.client, lab.h(writer)
    assert client.post(f"/v1/experiments/{eid}/cancel", headers=h).status_code == 200
    retried = client.post(f"/v1/experiments/{eid}/retry", headers=h)
    assert retried.status_code == 202
    new = lab.api.store.get_experiment(retried.json()["id"])
    assert new.retry_of == eid and new.owner == writer  # the retry is the retrier's job
    assert client.delete(f"/v1/experiments/{eid}", headers=h).status_code == 204
    assert client.get(f"/v1/experiments/{eid}", headers=h).status_code == 404


def test_sweep_cancel_is_403_for_another_user_and_200_for_the_owner(lab):
    created = lab.api.client.post("/v1/sweeps", json=SWEEP, headers=lab.h("alice"))
    assert created.status_code == 202
    sweep_id = created.json()["id"]
    members = created.json()["experiment_ids"]
    assert {lab.api.store.get_experiment(m).owner for m in members} == {"alice"}
    assert lab.api.store.get_sweep(sweep_id).owner == "alice"
    assert lab.api.client.get(f"/v1/sweeps/{sweep_id}", headers=lab.h("bob")).json()[
        "owner"] == "alice"
    bob = lab.api.client.post(f"/v1/sweeps/{sweep_id}/cancel", headers=lab.h("bob"))
    assert bob.status_code == 403
    assert {lab.api.store.get_experiment(m).status for m in members} == {"queued"}
    alice = lab.api.client.post(f"/v1/sweeps/{sweep_id}/cancel", headers=lab.h("alice"))
    assert alice.status_code == 200
    assert {lab.api.store.get_experiment(m).status for m in members} == {"canceled"}


def test_list_filter_owner_me_and_owner_name(lab):
    mine = {lab.submit("alice"), lab.submit("alice")}
    theirs = {lab.submit("bob")}

    def ids(query: str, user: str) -> set[str]:
        response = lab.api.client.get(f"/v1/experiments?{query}", headers=lab.h(user))
        assert response.status_code == 200
        return {e["id"] for e in response.json()["items"]}

    assert ids("owner=me", "alice") == mine
    assert ids("owner=me", "bob") == theirs
    assert ids("owner=alice", "bob") == mine
    assert ids("", "bob") == mine | theirs


def test_tokens_are_stored_only_as_their_sha256(lab):
    token = lab.tokens["alice"]
    stored = lab.api.store.list_tokens("alice")
    assert len(stored) == 1
    import sqlalchemy as sa

    with lab.api.store.engine.connect() as conn:
        hashes = conn.execute(sa.text("SELECT token_hash FROM api_tokens")).scalars().all()
    assert hashlib.sha256(token.encode()).hexdigest() in hashes
    db_bytes = b"".join(p.read_bytes() for p in Path(lab.api.settings.home).glob("advlab.db*"))
    assert token.encode() not in db_bytes


def test_with_auth_off_every_caller_is_the_admin_user_local(make_api):
    api = make_api()  # the embedded default
    response = api.client.post("/v1/experiments", json=spec())
    assert response.status_code == 202
    eid = response.json()["id"]
    assert api.client.get(f"/v1/experiments/{eid}").json()["owner"] == "local"
    assert api.client.post(f"/v1/experiments/{eid}/cancel").status_code == 200
    assert {e["id"] for e in api.client.get("/v1/experiments?owner=me").json()["items"]} == {eid}


def test_advlab_users_and_tokens_commands_create_a_working_token(tmp_path):
    import os
    import subprocess
    import sys

    from lab.store import open_store

    env = {**os.environ, "ADVLAB_HOME": str(tmp_path)}
    env.pop("ADVLAB_DATABASE_URL", None)

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "client.cli", *args], env=env, text=True,
                              capture_output=True, timeout=120, cwd=Path(__file__).parents[2])

    assert cli("migrate").returncode == 0
    assert cli("users", "add", "carol", "--admin").returncode == 0
    assert cli("users", "add", "carol").returncode != 0  # duplicate
    assert "carol\tadmin" in cli("users", "ls").stdout
    created = cli("tokens", "create", "carol", "--label", "laptop")
    token = created.stdout.strip()
    assert created.returncode == 0 and token.startswith("advlab_")
    store = open_store(f"sqlite:///{tmp_path / 'advlab.db'}")
    try:
        assert store.user_for_token(hash_token(token)).name == "carol"
        token_id = store.list_tokens("carol")[0].id
        assert token not in cli("tokens", "ls").stdout  # ids and labels only
        assert cli("tokens", "revoke", token_id).returncode == 0
        assert store.user_for_token(hash_token(token)) is None
    finally:
        store.close()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_store_users_and_tokens_on_both_backends(make_api, request, backend):
    import uuid

    from lab.store.base import Duplicate, NotFound

    url = request.getfixturevalue("pg_url") if backend == "postgresql" else None
    store = make_api(url).store
    name = f"u-{uuid.uuid4().hex[:8]}"  # the PostgreSQL database is shared by the session
    store.create_user(name, is_admin=True)
    with pytest.raises(Duplicate):
        store.create_user(name)
    with pytest.raises(NotFound):
        store.create_token(f"ghost-{name}", hash_token(generate_token()))
    token = generate_token()
    record = store.create_token(name, hash_token(token), label="ci")
    user = store.user_for_token(hash_token(token))
    assert user is not None and user.name == name and user.is_admin
    assert store.user_for_token(hash_token(token + "x")) is None
    assert store.revoke_token(record.id).revoked_at is not None
    assert store.user_for_token(hash_token(token)) is None
    assert store.revoke_token(record.id).revoked_at is not None  # idempotent
    with pytest.raises(NotFound):
        store.revoke_token("0" * 32)

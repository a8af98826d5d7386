"""PATCH /v1/experiments/{id}: tags and notes edited after submission — stored, listed and
filtered by; 422 for a bad body (naming the field), 404 for an unknown id, 403 for another
user's experiment, and the dashboard's cookie session needs its CSRF token."""

from __future__ import annotations

import re

import pytest

from service.auth import SESSION_COOKIE
from tests.service.api_support import spec


@pytest.fixture
def api(make_api):
    return make_api()


def submit(api, headers=None) -> str:
    r = api.client.post("/v1/experiments", json=spec(tags=["old"]), headers=headers or {})
    assert r.status_code == 202, r.text
    return r.json()["id"]


def test_patch_replaces_tags_and_notes_and_the_tag_filter_follows(api):
    eid = submit(api)
    r = api.client.patch(f"/v1/experiments/{eid}",
                         json={"tags": ["fa", "paper", "fa"], "notes": "lr too high?"})
    assert r.status_code == 200, r.text
    assert r.json()["tags"] == ["fa", "paper"] and r.json()["notes"] == "lr too high?"
    stored = api.client.get(f"/v1/experiments/{eid}").json()
    assert stored["tags"] == ["fa", "paper"] and stored["notes"] == "lr too high?"
    assert stored["spec"]["tags"] == ["old"]  # the resolved spec keeps what was submitted
    assert [e["id"] for e in api.client.get("/v1/experiments?tag=paper").json()["items"]] == [eid]
    assert api.client.get("/v1/experiments?tag=old").json()["items"] == []

    # one field alone leaves the other; "" clears the notes
    assert api.client.patch(f"/v1/experiments/{eid}", json={"notes": ""}).json()["tags"] == \
        ["fa", "paper"]
    assert api.client.get(f"/v1/experiments/{eid}").json()["notes"] is None


@pytest.mark.parametrize("body, loc", [
    ({"tags": [""]}, ["body", "tags", 0]),
    ({"tags": ["x" * 65]}, ["body", "tags", 0]),
    ({"tags": [f"t{i}" for i in range(33)]}, ["body", "tags"]),
    ({"notes": "n" * 10_001}, ["body", "notes"]),
    ({"tag": ["typo"]}, ["body", "tag"]),
    ({}, ["body"]),
])
def test_a_bad_patch_is_a_422_naming_the_field_and_changes_nothing(api, body, loc):
    eid = submit(api)
    r = api.client.patch(f"/v1/experiments/{eid}", json=body)
    assert r.status_code == 422, r.text
    assert any(d["loc"] == loc for d in r.json()["detail"]), r.json()
    assert api.client.get(f"/v1/experiments/{eid}").json()["tags"] == ["old"]


def test_patching_an_unknown_experiment_is_a_404(api):
    assert api.client.patch("/v1/experiments/nope", json={"notes": "x"}).status_code == 404


def test_only_the_owner_or_an_admin_may_patch_and_a_cookie_session_needs_csrf(token_api):
    api, tokens = token_api
    h = {n: {"Authorization": f"Bearer {t}"} for n, t in tokens.items()}
    eid = submit(api, h["alice"])
    url = f"/v1/experiments/{eid}"

    assert api.client.patch(url, json={"notes": "x"}).status_code == 401
    assert api.client.patch(url, json={"notes": "bob's"}, headers=h["bob"]).status_code == 403
    assert api.client.patch(url, json={"notes": "mine"}, headers=h["alice"]).status_code == 200
    assert api.client.patch(url, json={"tags": ["r"]}, headers=h["root"]).status_code == 200
    got = api.client.get(url, headers=h["bob"]).json()
    assert got["notes"] == "mine" and got["tags"] == ["r"]

    # the dashboard's session: the cookie alone is refused, the page's CSRF token lets it through
    api.client.cookies.set(SESSION_COOKIE, tokens["alice"])
    page = api.client.get(f"/experiments/{eid}").text
    csrf = re.search(r'<meta name="csrf-token" content="([0-9a-f]+)">', page).group(1)
    assert api.client.patch(url, json={"notes": "no csrf"}).status_code == 403
    r = api.client.patch(url, json={"notes": "from the page"}, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 200, r.text
    api.client.cookies.clear()
    assert api.client.get(url, headers=h["alice"]).json()["notes"] == "from the page"


def test_the_python_client_edits_tags_and_notes_and_reports_a_bad_one(api):
    from client.api import Client
    from client.errors import AdvlabError

    eid = submit(api)
    client = Client("http://testserver", retries=0)
    client._http = api.client  # the real app in-process (TestClient is an httpx.Client)
    exp = client.experiment(eid)
    assert exp.update(notes="from the client")["tags"] == ["old"]
    assert exp.update(tags=["a", "b"])["notes"] == "from the client"
    assert exp.info()["tags"] == ["a", "b"]
    with pytest.raises(AdvlabError) as err:
        exp.update(tags=[""])
    assert err.value.status_code == 422 and "tags" in str(err.value)

"""The lab server's defences against a second lab member and an outsider, on a REAL uvicorn
process with ADVLAB_AUTH=tokens (SQLite store, no worker unless a test needs one)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from service.auth import generate_token
from devtools.poll import poll
from devtools.services import throwaway_pg_database
from devtools.stack import TERMINAL, Stack, add_users, launch_stack, tiny_spec

USERS = ("alice", "bob")


def _add_users(stack: Stack) -> dict[str, dict[str, str]]:
    return add_users(stack, USERS)


def _lab(root: Path, **env: str) -> tuple[Stack, dict[str, dict[str, str]]]:
    stack = launch_stack(root, {"ADVLAB_AUTH": "tokens", **env}, workers=0)
    try:
        return stack, _add_users(stack)
    except BaseException:
        stack.close()
        raise


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    stack, headers = _lab(tmp_path_factory.mktemp("security"))
    yield stack, headers
    stack.close()


@pytest.fixture(scope="module")
def proxied_lab(tmp_path_factory):
    """The same server behind a (pretend) reverse proxy on 127.0.0.1, trusted by config."""
    stack, headers = _lab(tmp_path_factory.mktemp("security-proxied"),
                          ADVLAB_TRUSTED_PROXIES="127.0.0.1")
    yield stack, headers
    stack.close()


def test_bad_tokens_from_one_address_never_lock_out_the_valid_tokens_of_two_users(lab):
    stack, headers = lab
    repeated = {"Authorization": "Bearer advlab_guessing-the-same-token-again-000000"}
    bad_codes, good_codes = [], []
    with stack.client() as client:
        for i in range(100):
            bad = repeated if i % 2 else {"Authorization": f"Bearer {generate_token()}"}
            bad_codes.append(client.get("/v1/experiments", headers=bad).status_code)
            for user in USERS:
                good_codes.append(client.get("/v1/experiments", headers=headers[user]).status_code)
    assert good_codes == [200] * 200
    # the repeated token is limited after 20 failures (default); fresh guesses are each a 401
    repeated_codes, fresh_codes = bad_codes[1::2], bad_codes[0::2]
    assert repeated_codes == [401] * 20 + [429] * 30
    assert fresh_codes == [401] * 50


def test_a_forged_x_forwarded_for_is_ignored_when_no_proxy_is_trusted(lab):
    stack, _ = lab
    bad = {"Authorization": "Bearer advlab_forging-addresses-000000000000000000"}
    with stack.client() as client:
        codes = [client.get("/v1/experiments", headers={
            **bad, "X-Forwarded-For": f"10.0.{i // 250}.{i % 250 + 1}"}).status_code
            for i in range(40)]
    assert codes == [401] * 20 + [429] * 20  # all counted against the socket's 127.0.0.1


def test_x_forwarded_for_is_the_client_address_when_the_proxy_is_trusted(proxied_lab):
    stack, headers = proxied_lab
    bad = {"Authorization": "Bearer advlab_behind-a-proxy-000000000000000000000"}
    with stack.client() as client:
        one_client = [client.get("/v1/experiments", headers={
            **bad, "X-Forwarded-For": "203.0.113.7"}).status_code for _ in range(25)]
        other_client = client.get("/v1/experiments", headers={
            **bad, "X-Forwarded-For": "203.0.113.8"}).status_code
        valid_from_blocked = client.get("/v1/experiments", headers={
            **headers["alice"], "X-Forwarded-For": "203.0.113.7"}).status_code
    assert one_client == [401] * 20 + [429] * 5
    assert other_client == 401  # another client behind the same proxy is counted apart
    assert valid_from_blocked == 200


# --------------------------------------------------------------------------- idempotency per user


def test_another_users_idempotency_key_is_invisible(lab):
    stack, headers = lab
    with stack.client() as client:
        def submit(user: str, key: str, spec: dict) -> httpx.Response:
            return client.post("/v1/experiments", json=spec,
                               headers={**headers[user], "Idempotency-Key": key})

        alices = submit("alice", "walkthrough-1", tiny_spec(name="alice's"))
        assert alices.status_code == 202
        bobs = submit("bob", "walkthrough-1", tiny_spec(name="bob's, another spec"))
        assert bobs.status_code == 202 and bobs.json()["id"] != alices.json()["id"]
        assert client.get(f"/v1/experiments/{bobs.json()['id']}",
                          headers=headers["bob"]).json()["owner"] == "bob"
        # each replay finds its own user's job
        assert submit("bob", "walkthrough-1", tiny_spec(name="bob's, another spec")).json()[
            "id"] == bobs.json()["id"]
        assert submit("alice", "walkthrough-1", tiny_spec(name="alice's")).json()[
            "id"] == alices.json()["id"]
        sweep = {"name": "s", "base": tiny_spec(), "grid": {"learner.width": [4, 8]}}
        first = client.post("/v1/sweeps", json=sweep, headers={**headers["alice"],
                                                                "Idempotency-Key": "sweep-1"})
        second = client.post("/v1/sweeps", json=sweep, headers={**headers["bob"],
                                                                 "Idempotency-Key": "sweep-1"})
        assert first.status_code == second.status_code == 202
        assert first.json()["id"] != second.json()["id"]
        assert client.get(f"/v1/sweeps/{second.json()['id']}",
                          headers=headers["bob"]).json()["owner"] == "bob"


# --------------------------------------------------------------------------- atomic quotas

QUOTA = 5


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql",
                                                                marks=pytest.mark.postgres)])
def quota_lab(request, tmp_path_factory):
    """A server with ADVLAB_MAX_ACTIVE_PER_USER=5 on each backend (no worker: jobs stay queued)."""
    env = {"ADVLAB_MAX_ACTIVE_PER_USER": str(QUOTA)}
    root = tmp_path_factory.mktemp(f"quota-{request.param}")
    if request.param == "sqlite":
        stack, headers = _lab(root, **env)
        yield stack, headers
        stack.close()
        return
    pg_url = request.getfixturevalue("pg_url")
    with throwaway_pg_database("advlab_quota", pg_url) as url:
        stack, headers = _lab(root, ADVLAB_DATABASE_URL=url, **env)
        yield stack, headers
        stack.close()


def _concurrently(stack: Stack, n: int, method: str, path: str, body: dict,
                  headers: dict[str, str]) -> list[int]:
    """n requests released together from n threads, each on its own connection."""
    start = threading.Barrier(n)

    def one(_: int) -> int:
        with httpx.Client(base_url=stack.base_url, timeout=120) as client:
            start.wait()
            return client.request(method, path, json=body, headers=headers).status_code

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(one, range(n)))


def _active(stack: Stack, headers: dict[str, str]) -> int:
    with stack.client() as client:
        body = client.get("/v1/experiments?owner=me&status=queued&status=running&limit=200",
                          headers=headers).json()
    return len(body["items"])


def test_30_concurrent_submits_at_quota_5_create_exactly_5(quota_lab):
    stack, headers = quota_lab
    codes = _concurrently(stack, 30, "POST", "/v1/experiments", tiny_spec(), headers["alice"])
    assert sorted(codes) == [202] * QUOTA + [429] * (30 - QUOTA)
    assert _active(stack, headers["alice"]) == QUOTA


def test_concurrent_sweeps_are_admitted_whole_or_refused_whole(quota_lab):
    stack, headers = quota_lab
    sweep = {"name": "s", "base": tiny_spec(), "grid": {"learner.width": [4, 8]}}
    codes = _concurrently(stack, 10, "POST", "/v1/sweeps", sweep, headers["bob"])
    assert sorted(codes) == [202] * 2 + [429] * 8  # 2 x 2 members; a third would need 6 > 5
    assert _active(stack, headers["bob"]) == 4


# --------------------------------------------------------------------------- no server internals


def test_a_failing_jobs_error_shows_type_and_message_but_no_path_and_the_log_has_them(lab):
    import re

    stack, headers = lab
    empty = stack.root / "no-datasets-here"
    stack.env["ADVLAB_DATASET_DIR"] = str(empty)
    stack.start_worker("failing-worker")
    spec = {**tiny_spec(name="missing data"), "data": {"kind": "image", "dataset": "mnist"},
            "learner": {"kind": "mlp"}}
    with stack.client() as client:
        eid = client.post("/v1/experiments", json=spec, headers=headers["alice"]).json()["id"]
        body = poll(lambda: client.get(f"/v1/experiments/{eid}", headers=headers["bob"]).json(),
                    lambda body: body["status"] in TERMINAL, timeout=180, every=0.5,
                    message=lambda _: stack.log_text("failing-worker")[-3000:])
    assert body["status"] == "failed", stack.log_text("failing-worker")[-3000:]
    error = body["error"]
    assert error.startswith("FileNotFoundError: data set 'mnist' not found")
    assert "…/" in error  # the dataset directory, shortened
    assert not re.search(r"(?<![\w.:/~…])/[\w.-]+/", error), error  # no absolute path
    assert str(stack.root) not in error and "Traceback" not in error and 'File "' not in error
    log = stack.log_text("failing-worker")
    full = [line for line in log.splitlines() if eid in line and str(empty) in line]
    assert full, log[-3000:]  # the full text is in the worker's log, with the experiment id


# --------------------------------------------------------------------------- dashboard login

def _login(client: httpx.Client, token_header: dict[str, str], next_path: str = "/"
           ) -> httpx.Response:
    token = token_header["Authorization"].split(" ", 1)[1]
    return client.post("/login", data={"token": token, "next": next_path})


def _session(response: httpx.Response) -> str:
    """The session cookie a login set (the client's jar keeps it for the next requests)."""
    return response.cookies["advlab_session"]


def test_every_dashboard_page_needs_the_login_and_the_session_opens_it(lab):
    stack, headers = lab
    with stack.client() as client:
        eid = client.post("/v1/experiments", json=tiny_spec(), headers=headers["alice"]).json()["id"]
        sweep = client.post("/v1/sweeps", headers=headers["alice"], json={
            "name": "s", "base": tiny_spec(), "grid": {"learner.width": [4, 8]}}).json()["id"]
        pages = ["/", "/?status=queued", "/ui/rows", f"/experiments/{eid}", "/sweeps",
                 f"/sweeps/{sweep}", "/submit", "/docs"]
        for path in pages:
            response = client.get(path)
            assert response.status_code == 303, (path, response.status_code)
            assert response.headers["location"].startswith("/login?next=/"), path
        assert client.get("/openapi.json").status_code == 401  # an API client's answer
        assert client.get("/metrics").status_code == 401
        assert client.get("/static/app.js").status_code == 200  # the login page needs it

        wrong = client.post("/login", data={"token": "advlab_wrong", "next": "/sweeps"})
        assert wrong.status_code == 401 and "invalid or revoked token" in wrong.text
        login = _login(client, headers["bob"], "/sweeps")
        assert login.status_code == 303 and login.headers["location"] == "/sweeps"
        cookie = login.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie
        assert "secure" not in cookie  # plain http here; over TLS the cookie is Secure
        assert _login(client, headers["bob"], "https://evil.example/").headers[
            "location"] == "/"  # no open redirect
        assert _session(login)
        for path in pages:
            response = client.get(path)
            assert response.status_code == 200, (path, response.status_code)
        assert client.get("/openapi.json").json()["info"]["title"] == "advlab"
        assert client.get("/openapi.json", headers=headers["bob"]).status_code == 200
        # bob sees alice's experiment but is offered no cancel button on it
        assert 'id="cancel"' not in client.get(f"/experiments/{eid}").text


def test_in_page_cancel_needs_the_pages_csrf_token_and_only_acts_on_your_own_jobs(lab):
    import re

    stack, headers = lab
    with stack.client() as client:
        mine = client.post("/v1/experiments", json=tiny_spec(), headers=headers["alice"]).json()["id"]
        theirs = client.post("/v1/experiments", json=tiny_spec(), headers=headers["bob"]).json()["id"]
        assert _session(_login(client, headers["alice"]))
        page = client.get(f"/experiments/{mine}").text
        assert 'id="cancel"' in page
        csrf = re.search(r'<meta name="csrf-token" content="([0-9a-f]+)">', page).group(1)
        cancel = f"/v1/experiments/{mine}/cancel"
        # a cross-site form or script cannot send the page's token: refused, nothing changes
        assert client.post(cancel).status_code == 403
        assert client.post(cancel,
                           headers={"X-CSRF-Token": "0" * 40}).status_code == 403
        assert client.get(f"/v1/experiments/{mine}").json()["status"] == "queued"
        done = client.post(cancel, headers={"X-CSRF-Token": csrf})
        assert done.status_code == 200 and done.json()["status"] == "canceled"
        other = client.post(f"/v1/experiments/{theirs}/cancel",
                            headers={"X-CSRF-Token": csrf})
        assert other.status_code == 403 and "bob" in other.json()["detail"]
        # logout needs the token too, then clears the cookie
        assert client.post("/logout", data={"csrf": "x"}).status_code == 403
        out = client.post("/logout", data={"csrf": csrf})
        assert out.status_code == 303 and 'advlab_session=""' in out.headers["set-cookie"]


def test_metrics_needs_the_scrape_token_not_a_user_token(tmp_path):
    stack = launch_stack(tmp_path / "metrics", {"ADVLAB_AUTH": "tokens",
                                                "ADVLAB_METRICS_TOKEN": "scrape-secret-123"},
                         workers=0)
    try:
        headers = _add_users(stack)
        with stack.client() as client:
            assert client.get("/metrics").status_code == 401
            assert client.get("/metrics", headers=headers["alice"]).status_code == 401
            scraped = client.get("/metrics", headers={"Authorization": "Bearer scrape-secret-123"})
            assert scraped.status_code == 200 and "advlab_experiments" in scraped.text
    finally:
        stack.close()

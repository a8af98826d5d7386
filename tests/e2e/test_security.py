"""The lab server's defences against a second lab member and an outsider, on a REAL uvicorn
process with ADVLAB_AUTH=tokens (SQLite store, no worker unless a test needs one)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from service.auth import generate_token, hash_token
from tests.e2e.stack import Stack, launch_stack

USERS = ("alice", "bob")


def _add_users(stack: Stack) -> dict[str, dict[str, str]]:
    """alice and bob with one token each → their Authorization headers."""
    from service.store import open_store

    store = open_store(f"sqlite:///{Path(stack.env['ADVLAB_HOME']) / 'advlab.db'}")
    headers = {}
    try:
        for name in USERS:
            store.create_user(name)
            token = generate_token()
            store.create_token(name, hash_token(token))
            headers[name] = {"Authorization": f"Bearer {token}"}
    finally:
        store.close()
    return headers


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

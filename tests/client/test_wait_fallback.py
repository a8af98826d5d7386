"""Client.wait() where the event stream is not passed through (a buffering proxy, an older
server): it falls back to polling and still ends with the final state. The stream path itself
runs against a real server in tests/e2e/test_client_cli.py."""

from __future__ import annotations

import httpx
import pytest

from client.api import Client, JobFailed


def fake_server(statuses: list[str], events_status: int = 404):
    calls: list[str] = []
    states = iter(statuses)

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        if request.url.path.endswith("/events"):
            return httpx.Response(events_status, json={"detail": "Not Found"})
        status = next(states)
        return httpx.Response(200, json={"id": "abc", "status": status, "error": None,
                                         "progress": {"step": 1, "total": 2}})

    client = Client("http://advlab.test", retries=0)
    client._http = httpx.Client(base_url="http://advlab.test",
                                transport=httpx.MockTransport(handler))
    return client, calls


def test_wait_polls_until_the_end_when_the_stream_is_refused():
    client, calls = fake_server(["queued", "running", "succeeded"])
    info = client.experiment("abc").wait(poll_s=0.01)
    assert info["status"] == "succeeded"
    assert calls == ["/v1/experiments/abc/events"] + ["/v1/experiments/abc"] * 3


def test_wait_raises_job_failed_after_polling_to_a_failure():
    client, _ = fake_server(["running", "failed"])
    with pytest.raises(JobFailed):
        client.experiment("abc").wait(poll_s=0.01)

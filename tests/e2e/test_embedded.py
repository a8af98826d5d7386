"""The embedded default end to end: SQLite + the filesystem broker, real API and worker processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from devtools.poll import poll
from tests.e2e.checks import assert_full_run_results
from devtools.stack import REPO, Stack, free_port, launch_stack, tiny_spec


@pytest.fixture(scope="module")
def embedded(tmp_path_factory):
    stack = launch_stack(tmp_path_factory.mktemp("embedded"), {}, workers=2)
    yield stack
    stack.close()


def test_submitted_spec_runs_on_a_real_worker_and_results_come_back(embedded):
    spec = tiny_spec(name="embedded e2e")
    experiment_id = embedded.submit(spec)
    body = embedded.wait_for(experiment_id)
    assert body["status"] == "succeeded", body.get("error")
    assert body["attempts"] == 1
    assert body["worker"]
    assert_full_run_results(embedded, experiment_id, spec, body)


def test_fifty_concurrent_submits_are_all_stored_and_finished_without_database_locked(embedded):
    tag = f"burst-{uuid.uuid4().hex[:6]}"
    spec = tiny_spec(name="burst", epochs=1_000, every=250, attacks=[])  # ~0.3 s each
    spec["tags"] = [tag]

    def submit(i: int) -> str:
        with httpx.Client(base_url=embedded.base_url, timeout=60) as client:
            return embedded.submit({**spec, "seed": i}, client)

    with ThreadPoolExecutor(max_workers=25) as pool:
        ids = list(pool.map(submit, range(50)))
    assert len(set(ids)) == 50

    listed, cursor = [], None
    with embedded.client() as client:
        while True:
            params = {"tag": tag, "limit": 100, **({"cursor": cursor} if cursor else {})}
            page = client.get("/v1/experiments", params=params).json()
            listed += [item["id"] for item in page["items"]]
            cursor = page.get("next_cursor")
            if not cursor:
                break
    assert sorted(listed) == sorted(ids)

    finals = [embedded.wait_for(i, timeout=240) for i in ids]
    assert [f["status"] for f in finals] == ["succeeded"] * 50
    assert {f["attempts"] for f in finals} == {1}
    assert len({f["worker"] for f in finals}) == 2  # both workers took jobs from one folder queue
    assert "database is locked" not in embedded.log_text().lower()


def _children(pid: int) -> list[int]:
    """Direct children of `pid`, from /proc (Linux)."""
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"


def test_advlab_serve_runs_api_and_worker_and_sigint_stops_all_handing_the_job_back(tmp_path):
    """`advlab serve` = migrate + API + a real worker; Ctrl-C stops every child and a running
    job goes back to the queue at once (warm shutdown), not after stale_after_s."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ADVLAB_")}
    env.update({"ADVLAB_HOME": str(tmp_path / "home"), "ADVLAB_DEVICE": "cpu",
                "OMP_NUM_THREADS": "1", "ADVLAB_HEARTBEAT_S": "0.2"})
    log = open(tmp_path / "serve.log", "wb")
    serve = subprocess.Popen([sys.executable, "-m", "client.cli", "serve", "--port", str(port)],
                             cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        stack = Stack(root=tmp_path, env=env, base_url=f"http://127.0.0.1:{port}")
        poll(lambda: httpx.get(stack.base_url + "/v1/health", timeout=2).status_code == 200,
             timeout=90, every=0.3, ignore=httpx.HTTPError)
        experiment_id = stack.submit(tiny_spec(name="served", epochs=100_000, every=10_000))
        stack.wait_for(experiment_id, {"running"}, timeout=90,
                       until=lambda b: b["progress"]["step"] > 0)
        children = _children(serve.pid)
        assert len(children) == 2  # uvicorn and one celery worker

        serve.send_signal(signal.SIGINT)
        assert serve.wait(timeout=60) == 0
        assert not [pid for pid in children if _alive(pid)]
    finally:
        if serve.poll() is None:
            serve.kill()
            serve.wait()
        log.close()

    from lab.store import open_store

    job = open_store(f"sqlite:///{tmp_path / 'home' / 'advlab.db'}").get_experiment(experiment_id)
    assert (job.status, job.attempts, job.worker) == ("queued", 1, None)
    # and its message waits in the broker folder for the next `advlab serve`
    assert len(list((tmp_path / "home" / "broker" / "queue").glob("*.msg"))) == 1
    assert "Warm shutdown" in (tmp_path / "serve.log").read_text()

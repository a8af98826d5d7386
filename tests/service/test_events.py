"""GET /v1/experiments/{id}/events: Server-Sent Events on the real app and store (SQLite).
The worker's side is played through the real store methods, in a thread while the stream is
open for the live test."""

from __future__ import annotations

import json
import threading
import time

from lab.store.base import MetricPoint
from tests.service.api_support import SMALL_SPEC, run_fake_worker


def read_events(client, experiment_id: str, **headers) -> list[tuple[str, str | None, object]]:
    """(event, id, parsed data) of every event until the server closes the stream."""
    events, name, event_id, data = [], None, None, []
    with client.stream("GET", f"/v1/experiments/{experiment_id}/events",
                       params={"poll_s": 0.05}, headers=headers) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line == "":
                if name is not None:
                    events.append((name, event_id, json.loads("\n".join(data))))
                name, event_id, data = None, None, []
            elif line.startswith("event: "):
                name = line[len("event: "):]
            elif line.startswith("id: "):
                event_id = line[len("id: "):]
            elif line.startswith("data: "):
                data.append(line[len("data: "):])
    return events


def submit(api) -> str:
    r = api.client.post("/v1/experiments", json=SMALL_SPEC)
    assert r.status_code == 202
    return r.json()["id"]


def test_finished_experiment_streams_status_progress_all_points_and_end_then_closes(make_api):
    api = make_api()
    eid = submit(api)
    run_fake_worker(api.store, eid, steps=5, seeds=(3,))
    events = read_events(api.client, eid)
    kinds = [e[0] for e in events]
    assert kinds[:2] == ["status", "progress"] and kinds[-1] == "end"
    assert events[0][2]["status"] == "succeeded"
    assert events[1][2]["step"] == events[1][2]["total"] == 5
    points = [tuple(p) for e in events if e[0] == "metrics" for p in e[2]["points"]]
    stored = api.store.get_metrics(eid)
    assert sorted(points) == sorted((p.name, p.seed, p.step, p.value)
                                    for pts in stored.values() for p in pts)
    names = [n for e in events if e[0] == "metrics" for n in e[2]["names"]]
    assert sorted(names) == sorted(stored)  # each new metric announced once
    end = events[-1][2]
    assert end["status"] == "succeeded" and end["summary"]["clean_accuracy"]["test"] == 0.9


def test_live_stream_follows_queued_running_progress_and_new_points_until_terminal(make_api):
    api = make_api()
    eid = submit(api)
    store = api.store

    def worker() -> None:
        time.sleep(0.3)
        exp = store.start_attempt(eid, "thread-worker")
        for step in range(4):
            time.sleep(0.15)
            store.add_metrics(eid, exp.attempts, [MetricPoint("train/loss", step, 1.0 / (step + 1), 0)])
            if step == 2:
                store.add_metrics(eid, exp.attempts, [MetricPoint("test/clean_accuracy", step,
                                                                  0.75, 0)])
            store.heartbeat(eid, exp.attempts, step)
        store.finish(eid, exp.attempts, "succeeded", summary={"clean_accuracy": {"test": 0.75}})

    thread = threading.Thread(target=worker)
    thread.start()
    try:
        events = read_events(api.client, eid)
    finally:
        thread.join()
    statuses = [e[2]["status"] for e in events if e[0] == "status"]
    assert statuses == ["queued", "running", "succeeded"]
    steps = [e[2]["step"] for e in events if e[0] == "progress"]
    assert steps == sorted(steps) and len(steps) >= 3 and steps[-1] == 5  # succeeded: total
    points = [tuple(p[:3]) for e in events if e[0] == "metrics" for p in e[2]["points"]]
    assert sorted(points) == sorted([("train/loss", 0, s) for s in range(4)]
                                    + [("test/clean_accuracy", 0, 2)])  # each once
    announced = [n for e in events if e[0] == "metrics" for n in e[2]["names"]]
    assert announced == ["train/loss", "test/clean_accuracy"]
    assert events[-1][0] == "end" and events[-1][2]["status"] == "succeeded"


def test_last_event_id_resumes_from_that_step_without_resending_earlier_points(make_api):
    api = make_api()
    eid = submit(api)
    run_fake_worker(api.store, eid, steps=5, seeds=(3,))
    events = read_events(api.client, eid, **{"Last-Event-ID": "3"})
    steps = {p[2] for e in events if e[0] == "metrics" for p in e[2]["points"]}
    assert steps == {3, 4, 5}  # at least once: step 3 may have been cut mid-flush
    assert [e[1] for e in events if e[0] == "metrics"][-1] == "5"  # id = last step sent


def test_canceled_queued_experiment_ends_with_canceled(make_api):
    api = make_api()
    eid = submit(api)
    api.client.post(f"/v1/experiments/{eid}/cancel")
    events = read_events(api.client, eid)
    assert [e[0] for e in events] == ["status", "progress", "end"]
    assert events[-1][2]["status"] == "canceled"


def test_events_of_unknown_experiment_is_404(make_api):
    api = make_api()
    assert api.client.get("/v1/experiments/nope/events").status_code == 404

"""Server-Sent Events of one experiment's live progress (GET /v1/experiments/{id}/events).

The store is the only channel between a worker and the API, so the stream polls it (every
`poll_s`) and sends what changed since the last look:

- `status`   {"status", "attempts", "worker", "started_at", "error", "cancel_requested"} when
             the status changes;
- `progress` {"step", "total", "fraction", "eta_s"} when the step changes;
- `metrics`  {"names": [...], "points": [[name, seed, step, value], ...]}: points not sent yet
             (the event `id` is their last step; a reconnecting EventSource sends it back as
             Last-Event-ID and the stream resumes FROM that step: at least once, since a worker
             may have flushed that step's points in several batches — dedupe on (name, seed,
             step));
- `end`      the final experiment (status, summary, error) once it is terminal; then the stream
             closes. A comment line keeps idle connections open through proxies.

`StreamState` is what was sent so far (plain, synchronous); `event_stream` is the polling loop.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any, AsyncIterator

from fastapi import Request
from fastapi.concurrency import run_in_threadpool

from lab.status import TERMINAL
from lab.store.base import Experiment, NotFound, Store
from service.experiments import to_read

KEEPALIVE_S = 15.0
MAX_POINTS_PER_EVENT = 5_000


def sse(event: str, data: Any, event_id: int | None = None) -> str:
    """One SSE frame. JSON never contains a raw newline, so `data` is a single line."""
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


def new_points(store: Store, experiment_id: str, after_step: int,
               sent_at_last: set[tuple[str, int]]) -> list[list[Any]]:
    """Points with step > after_step, plus those at after_step not yet sent (a worker may
    flush one evaluation's points in several batches)."""
    by_name = store.get_metrics(experiment_id, since_step=max(after_step, 0))
    points = [[p.name, p.seed, p.step, p.value] for pts in by_name.values() for p in pts
              if p.step > after_step or (p.step == after_step
                                         and (p.name, p.seed) not in sent_at_last)]
    points.sort(key=lambda p: (p[2], p[0], p[1]))
    return points


@dataclass
class StreamState:
    """What one stream has sent: the frames for the next look follow from it and the row."""

    sent_step: int = -1  # metric points up to this step were sent
    sent_at_last: set[tuple[str, int]] = field(default_factory=set)  # (name, seed) at sent_step
    names: set[str] = field(default_factory=set)
    last_status: str | None = None
    last_step: int | None = None
    last_attempt: int | None = None

    def look(self, exp: Experiment) -> list[str]:
        """Status and progress frames for the row as it is now."""
        frames: list[str] = []
        if exp.attempts != self.last_attempt and self.last_attempt is not None:
            # a re-run cleared the earlier attempt's points: send the new attempt's from scratch
            self.sent_step, self.sent_at_last, self.names = -1, set(), set()
        self.last_attempt = exp.attempts
        if exp.status != self.last_status:
            self.last_status = exp.status
            frames.append(sse("status", {
                "status": exp.status, "attempts": exp.attempts, "worker": exp.worker,
                "started_at": exp.started_at.isoformat() if exp.started_at else None,
                "error": exp.error, "cancel_requested": exp.cancel_requested}))
        progress = to_read(exp).progress
        if progress.step != self.last_step:
            self.last_step = progress.step
            frames.append(sse("progress", progress.model_dump()))
        return frames

    def metrics(self, points: list[list[Any]]) -> list[str]:
        """`metrics` frames for points read after `sent_step`, at most MAX_POINTS_PER_EVENT each."""
        frames: list[str] = []
        for start in range(0, len(points), MAX_POINTS_PER_EVENT):
            chunk = points[start:start + MAX_POINTS_PER_EVENT]
            new_names = sorted({p[0] for p in chunk} - self.names)
            self.names.update(new_names)
            if chunk[-1][2] != self.sent_step:
                self.sent_step, self.sent_at_last = chunk[-1][2], set()
            self.sent_at_last.update((p[0], p[1]) for p in chunk if p[2] == self.sent_step)
            frames.append(sse("metrics", {"names": new_names, "points": chunk}, self.sent_step))
        return frames


def end_frame(exp: Experiment) -> str:
    return sse("end", json.loads(to_read(exp).model_dump_json(
        include={"id", "status", "error", "summary", "progress"})))


async def event_stream(request: Request, store: Store, experiment_id: str, *, poll_s: float,
                       after_step: int, with_metrics: bool = True) -> AsyncIterator[str]:
    state = StreamState(sent_step=after_step)
    quiet_since = time.monotonic()
    yield f"retry: {int(max(poll_s, 1.0) * 1000)}\n\n"
    while True:
        try:
            exp = await run_in_threadpool(store.get_experiment, experiment_id)
        except NotFound:
            yield sse("end", {"id": experiment_id, "status": "deleted"})
            return
        frames = state.look(exp)
        if with_metrics:
            points = await run_in_threadpool(new_points, store, experiment_id, state.sent_step,
                                             state.sent_at_last)
            frames += state.metrics(points)
        if exp.status in TERMINAL:
            frames.append(end_frame(exp))
        for frame in frames:
            yield frame
        if exp.status in TERMINAL:
            return
        if frames:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since > KEEPALIVE_S:
            quiet_since = time.monotonic()
            yield ": keep-alive\n\n"
        if await request.is_disconnected():
            return
        await asyncio.sleep(poll_s)

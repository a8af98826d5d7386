"""GET /v1/experiments/{id}/events: live progress as Server-Sent Events.

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
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Annotated, Any, AsyncIterator

from fastapi import APIRouter, Header, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from service.api.deps import ExperimentDep, StoreDep
from service.experiments import to_read
from service.schemas import Error
from lab.store.base import TERMINAL, NotFound, Store

router = APIRouter(prefix="/experiments", tags=["experiments"])

KEEPALIVE_S = 15.0
MAX_POINTS_PER_EVENT = 5_000


def sse(event: str, data: Any, event_id: int | None = None) -> str:
    """One SSE frame. JSON never contains a raw newline, so `data` is a single line."""
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


def _new_points(store: Store, experiment_id: str, after_step: int,
                sent_at_last: set[tuple[str, int]]) -> list[list[Any]]:
    """Points with step > after_step, plus those at after_step not yet sent (a worker may
    flush one evaluation's points in several batches)."""
    by_name = store.get_metrics(experiment_id, since_step=max(after_step, 0))
    points = [[p.name, p.seed, p.step, p.value] for pts in by_name.values() for p in pts
              if p.step > after_step or (p.step == after_step
                                         and (p.name, p.seed) not in sent_at_last)]
    points.sort(key=lambda p: (p[2], p[0], p[1]))
    return points


async def event_stream(request: Request, store: Store, experiment_id: str, *, poll_s: float,
                       after_step: int) -> AsyncIterator[str]:
    last_status: str | None = None
    last_step: int | None = None
    last_attempt: int | None = None
    sent_step = after_step
    sent_at_last: set[tuple[str, int]] = set()  # (name, seed) already sent at sent_step
    names: set[str] = set()
    quiet_since = time.monotonic()
    yield f"retry: {int(max(poll_s, 1.0) * 1000)}\n\n"
    while True:
        try:
            exp = await run_in_threadpool(store.get_experiment, experiment_id)
        except NotFound:
            yield sse("end", {"id": experiment_id, "status": "deleted"})
            return
        frames: list[str] = []
        if exp.attempts != last_attempt and last_attempt is not None:
            # a re-run cleared the earlier attempt's points: send the new attempt's from scratch
            sent_step, sent_at_last, names = -1, set(), set()
        last_attempt = exp.attempts
        if exp.status != last_status:
            last_status = exp.status
            frames.append(sse("status", {
                "status": exp.status, "attempts": exp.attempts, "worker": exp.worker,
                "started_at": exp.started_at.isoformat() if exp.started_at else None,
                "error": exp.error, "cancel_requested": exp.cancel_requested}))
        read = to_read(exp)
        if read.progress.step != last_step:
            last_step = read.progress.step
            frames.append(sse("progress", read.progress.model_dump()))
        points = await run_in_threadpool(_new_points, store, experiment_id, sent_step,
                                         sent_at_last)
        for start in range(0, len(points), MAX_POINTS_PER_EVENT):
            chunk = points[start:start + MAX_POINTS_PER_EVENT]
            new_names = sorted({p[0] for p in chunk} - names)
            names.update(new_names)
            if chunk[-1][2] != sent_step:
                sent_step, sent_at_last = chunk[-1][2], set()
            sent_at_last.update((p[0], p[1]) for p in chunk if p[2] == sent_step)
            frames.append(sse("metrics", {"names": new_names, "points": chunk}, sent_step))
        if exp.status in TERMINAL:
            frames.append(sse("end", json.loads(read.model_dump_json(
                include={"id", "status", "error", "summary", "progress"}))))
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


@router.get(
    "/{experiment_id}/events", response_class=StreamingResponse,
    summary="Live progress (Server-Sent Events)",
    description="`text/event-stream` with events `status`, `progress`, `metrics` (new points; "
                "`id` = their last step; `Last-Event-ID` on reconnect resumes from that step, at least once) and a final "
                "`end` carrying the terminal status and summary, after which the stream closes. "
                "A finished experiment answers status, progress, all its points and `end` at "
                "once.",
    responses={200: {"content": {"text/event-stream": {}}, "description": "The event stream."},
               404: {"model": Error, "description": "No experiment with that id."}})
async def experiment_events(
    request: Request, experiment: ExperimentDep, store: StoreDep,
    poll_s: Annotated[float, Query(ge=0.05, le=10.0, description="Seconds between looks at "
                                                                 "the store.")] = 0.5,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> StreamingResponse:
    after_step = -1
    if last_event_id and last_event_id.strip().lstrip("-").isdigit():
        after_step = int(last_event_id.strip())
    stream = event_stream(request, store, experiment.id, poll_s=poll_s, after_step=after_step)
    return StreamingResponse(stream, media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

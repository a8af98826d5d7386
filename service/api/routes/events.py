"""GET /v1/experiments/{id}/events: live progress as Server-Sent Events (the stream itself is
service.events')."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse

from service.api.deps import ExperimentDep, StoreDep
from service.events import event_stream
from service.schemas import Error

router = APIRouter(prefix="/experiments", tags=["experiments"])


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
    metrics: Annotated[bool, Query(description="Send `metrics` events (false: status, "
                                               "progress and `end` only, for a client that "
                                               "only waits).")] = True,
) -> StreamingResponse:
    after_step = -1
    if last_event_id and last_event_id.strip().lstrip("-").isdigit():
        after_step = int(last_event_id.strip())
    stream = event_stream(request, store, experiment.id, poll_s=poll_s, after_step=after_step,
                          with_metrics=metrics)
    return StreamingResponse(stream, media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

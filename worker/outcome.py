"""How one message for a job ended, as the task reports it (and logs it)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any


class Outcome(str, Enum):
    SUCCEEDED = "succeeded"  # summary stored
    FAILED = "failed"  # error stored; not retried (bad spec, science error, time, memory)
    CANCELED = "canceled"  # stopped on request
    REQUEUED = "queued"  # handed back to the queue (worker shutting down)
    STALE = "stale"  # this attempt is no longer the job's (reaped, or the job was deleted)
    SKIPPED = "skipped"  # the message found nothing runnable (done, canceled, unknown, taken)

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class RunResult:
    """What running one attempt came to, before it is settled in the store."""

    outcome: Outcome
    summary: dict[str, Any] | None = None
    error: str | None = None
    transient: bool = False  # a transient database error: requeue and let Celery retry

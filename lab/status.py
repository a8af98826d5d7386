"""Job statuses: the one list of them, which ones are final, and which ones hold a worker slot.

`JobStatus` is a `StrEnum`, so a status read from the database (a plain str) compares equal to
its member: `exp.status in TERMINAL` and `JobStatus.QUEUED == "queued"` both hold.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal, get_args


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"


Status = Literal["queued", "running", "succeeded", "failed", "canceled"]  # for pydantic/OpenAPI

STATUSES: tuple[str, ...] = tuple(s.value for s in JobStatus)  # in lifecycle order
TERMINAL: frozenset[str] = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELED})
ACTIVE: frozenset[str] = frozenset({JobStatus.QUEUED, JobStatus.RUNNING})

assert get_args(Status) == STATUSES, "Status and JobStatus must list the same statuses"

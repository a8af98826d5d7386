"""What the client raises, and the statuses after which a job never changes again."""

from __future__ import annotations

from typing import Any

from lab.status import TERMINAL

__all__ = ["TERMINAL", "AdvlabError", "JobFailed"]


class AdvlabError(Exception):
    """An HTTP error from the server, carrying its status code and message (for a 422 the
    message names each offending field's JSON path)."""

    def __init__(self, status_code: int, message: str, detail: Any = None) -> None:
        super().__init__(f"HTTP {status_code}: {message}")
        self.status_code = status_code
        self.message = message
        self.detail = detail


class JobFailed(AdvlabError):
    """`wait()` saw the experiment end failed or canceled (`.info` has the final state)."""

    def __init__(self, message: str, info: dict) -> None:
        super().__init__(409, message, info.get("error"))
        self.info = info

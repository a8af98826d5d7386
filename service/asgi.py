"""What the pure-ASGI middlewares share (service.hardening, service.telemetry)."""

from __future__ import annotations

from typing import Any, Callable


class StatusRecorder:
    """An ASGI `send` wrapper that records the response's status code (500 until the response
    starts, so an exception before it counts as a server error) and lets `on_start` rewrite the
    `http.response.start` message (headers)."""

    def __init__(self, send: Any, on_start: Callable[[dict], dict] | None = None) -> None:
        self.send, self.on_start = send, on_start
        self.status = 500

    async def __call__(self, message: dict) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            if self.on_start is not None:
                message = self.on_start(message)
        await self.send(message)

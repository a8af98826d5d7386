"""HTTP hardening middlewares (pure ASGI, so streaming responses such as SSE pass through):

- `RequestContextMiddleware`: X-Request-ID in (validated) or made up, echoed on the response,
  bound to the log context; one structured access-log line per request (method, path, status,
  duration, user, experiment id — never headers, so never the Authorization header); security
  headers on every response that does not set its own (nosniff, no framing, no referrer).
- `StrictJsonMiddleware`: JSON bodies with duplicate keys or NaN/Infinity (also overflowing
  numbers like 1e999) are a 422 before the app parses them: Python's json would silently keep
  the last duplicate and accept NaN, which then reaches a float field of the spec.
CORS is off unless ADVLAB_CORS_ORIGINS names origins (service.main adds Starlette's middleware).
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
import uuid
from typing import Any

from lab.logging import experiment_id_var, request_id_var
from service.asgi import StatusRecorder

access_log = logging.getLogger("advlab.access")

REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
EXPERIMENT_PATH = re.compile(r"^/(?:v1|ui)/experiments/([0-9a-fA-F]{32})(?:/|$)")
SECURITY_HEADERS = {
    b"x-content-type-options": b"nosniff",
    b"x-frame-options": b"DENY",
    b"referrer-policy": b"no-referrer",
    b"cross-origin-resource-policy": b"same-origin",
}
BODY_METHODS = {"POST", "PUT", "PATCH"}


class RequestContextMiddleware:
    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        given = headers.get(b"x-request-id", b"").decode("latin-1")
        request_id = given if REQUEST_ID.match(given) else uuid.uuid4().hex
        match = EXPERIMENT_PATH.match(scope.get("path", ""))
        experiment_id = match.group(1) if match else None
        tokens = (request_id_var.set(request_id), experiment_id_var.set(experiment_id))
        started = time.perf_counter()

        def add_headers(message: dict) -> dict:
            out = list(message.get("headers") or [])
            present = {k.lower() for k, _ in out}
            out.append((b"x-request-id", request_id.encode()))
            out += [(k, v) for k, v in SECURITY_HEADERS.items() if k not in present]
            return {**message, "headers": out}

        recorder = StatusRecorder(send, add_headers)
        try:
            await self.app(scope, receive, recorder)
        finally:
            status = recorder.status
            user = (scope.get("state") or {}).get("user")
            access_log.info(
                "%s %s %s", scope.get("method"), scope.get("path"), status,
                extra={"method": scope.get("method"), "path": scope.get("path"),
                       "status": status, "user": user,
                       "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                       "client": (scope.get("client") or ("?",))[0]})
            request_id_var.reset(tokens[0])
            experiment_id_var.reset(tokens[1])


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r} in a JSON object")
        out[key] = value
    return out


class _NonFinite(str):
    """Stands in for NaN/Infinity/1e999 while parsing, so the walk below can name its path."""


def _finite_float(text: str) -> float | _NonFinite:
    value = float(text)
    return value if math.isfinite(value) else _NonFinite(f"number {text} is out of range")


def _no_constant(name: str) -> _NonFinite:
    return _NonFinite(f"{name} is not valid JSON")


def _first_non_finite(node: Any, path: list[str | int]) -> tuple[list[str | int], str] | None:
    if isinstance(node, _NonFinite):
        return path, str(node)
    items = (node.items() if isinstance(node, dict) else
             enumerate(node) if isinstance(node, list) else ())
    for key, value in items:
        found = _first_non_finite(value, [*path, key])
        if found is not None:
            return found
    return None


def strict_json_problem(body: bytes) -> tuple[list[str | int], str] | None:
    """(JSON path, why) when the body is not strict JSON, else None (also None for malformed
    JSON, which the app's own parser reports with its position)."""
    try:
        doc = json.loads(body, object_pairs_hook=_no_duplicates, parse_float=_finite_float,
                         parse_constant=_no_constant)
    except ValueError as exc:
        if isinstance(exc, (json.JSONDecodeError, UnicodeDecodeError)):
            return None
        return [], str(exc)
    found = _first_non_finite(doc, [])
    if found is None:
        return None
    path, why = found
    dotted = ".".join(map(str, path))
    return path, f"{dotted + ': ' if dotted else ''}{why}: send a finite number"


def replaying(body: bytes, receive: Any) -> Any:
    """An ASGI `receive` that hands the app the already-read `body` once, then defers to the
    real `receive` (which reports the disconnect)."""
    replayed = False

    async def replay() -> dict:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


class StrictJsonMiddleware:
    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] not in BODY_METHODS:
            await self.app(scope, receive, send)
            return
        content_type = dict(scope.get("headers") or []).get(b"content-type", b"")
        if b"json" not in content_type.lower():
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        while True:  # the body size is already capped by BodyLimitMiddleware outside us
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        problem = strict_json_problem(body) if body else None
        if problem is not None:
            path, why = problem
            payload = json.dumps({"detail": [{"loc": ["body", *path], "msg": why,
                                              "type": "json_invalid"}]}).encode()
            await send({"type": "http.response.start", "status": 422,
                        "headers": [(b"content-type", b"application/json"),
                                    (b"content-length", str(len(payload)).encode())]})
            await send({"type": "http.response.body", "body": payload})
            return
        await self.app(scope, replaying(body, receive), send)

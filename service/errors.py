"""Errors → HTTP, in one place.

- Validation errors become 422 `{"detail": [{loc, msg, type}]}` where `loc` is the JSON path of
  the offending field (`["body", "data", "d"]`): pydantic's own locations also name union members
  (`multi_cluster`, `float`, ...), which a client cannot map back onto its document, so they are
  stripped by walking the spec's type tree (service.spec_paths).
- Store domain errors: NotFound → 404, IllegalTransition → 409, SchemaOutOfDate → 503.
- The database unreachable or a connection dropped mid-request (SQLAlchemy OperationalError,
  DisconnectionError, InterfaceError) → 503 with `Retry-After`: a transient fault, not a bug.
  Nothing to reset afterwards: the engine's pool_pre_ping replaces dead pooled connections on
  the next checkout, so the next request after the database is back succeeds.
- A request value the database refuses to hold (SQLAlchemy DataError: a NUL character in a
  string on PostgreSQL, found by fuzzing `?names=%00`) → 422: the client's input, not a bug.
- A spec over a configured size limit (LimitExceeded) or priced over a limit by its estimate
  (OverEstimate: one item per quantity, with `estimate`, `limit`, `queue` and the dominant
  field's `path` besides `loc`) → 413.
- Bodies over `settings.max_body_bytes` are refused with 413 by `BodyLimitMiddleware` BEFORE
  anything parses them (Content-Length checked first, then the streamed bytes are counted, so a
  chunked upload without a length cannot get around it).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError, DisconnectionError, InterfaceError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from service.hardening import replaying
from service.spec_paths import json_path, kinds_at
from lab.store.base import IllegalTransition, NotFound, SchemaOutOfDate


log = logging.getLogger("advlab.api")

DATABASE_RETRY_AFTER_S = 2  # Retry-After of a 503 for a lost database connection
BODY_NOT_DECODED = "There was an error parsing the body"  # FastAPI's 400 for undecodable bodies


class LimitExceeded(Exception):
    """A spec within the schema but over a configured size limit (413 naming the limit)."""

    def __init__(self, limit: str, value: int, maximum: int, loc: list[str | int]) -> None:
        self.limit, self.value, self.maximum, self.loc = limit, value, maximum, loc
        path = ".".join(map(str, loc[1:] if loc[:1] == ["body"] else loc))
        super().__init__(f"{path} = {value} exceeds the limit "
                         f"{limit} = {maximum} (configurable: ADVLAB_{limit.upper()})")


@dataclass(frozen=True)
class Refusal:
    """One estimated quantity over its limit: the 413 item names all of it."""

    quantity: str  # flops | peak_bytes | stored_bytes
    limit_name: str  # the setting: max_gflop, gpu_max_peak_gb, max_sweep_stored_gb, ...
    estimate: float  # FLOPs or bytes
    maximum: float  # same unit as estimate
    queue: str  # cpu | gpu | sweep
    loc: list[str | int]  # JSON path in the request of the field that dominates the estimate
    path: str | None  # the same in the spec, dotted (advcore.cost.path_str)
    msg: str

    def item(self) -> dict[str, Any]:
        return {"loc": self.loc, "msg": self.msg, "type": f"limit.{self.limit_name}",
                "quantity": self.quantity, "estimate": self.estimate, "limit": self.maximum,
                "queue": self.queue, "path": self.path}


class OverEstimate(Exception):
    """A spec (or a sweep) whose estimated cost exceeds a configured limit (413)."""

    def __init__(self, refusals: list[Refusal]) -> None:
        self.refusals = refusals
        super().__init__("; ".join(r.msg for r in refusals))


class FieldError(Exception):
    """A bad request parameter found after parsing (422 in the same shape as validation)."""

    def __init__(self, loc: list[str | int], msg: str, type: str = "value_error") -> None:
        self.loc, self.msg, self.type = loc, msg, type
        super().__init__(msg)


class Conflict(Exception):
    """A request that cannot be honoured in the current state (409) — outside the store."""


def _body_error(err: dict[str, Any]) -> dict[str, Any]:
    loc = list(err.get("loc", ()))
    typ = err.get("type", "value_error")
    msg = err.get("msg", "invalid value")
    if typ == "json_invalid":
        ctx = err.get("ctx") or {}
        reason = ctx.get("error", msg)
        at = f" at character {loc[1]}" if len(loc) > 1 else ""
        return {"loc": ["body"], "msg": f"malformed JSON{at}: {reason}", "type": "json_invalid"}
    if loc and loc[0] == "body":
        loc = ["body", *json_path(loc[1:])]
    if typ == "union_tag_not_found":  # e.g. "data": {"d": 20} without its kind
        tags = kinds_at([p for p in loc[1:]])
        if tags:
            msg = f"missing `kind`: one of {', '.join(tags)}"
    path = ".".join(str(p) for p in loc[1:]) if len(loc) > 1 else ""
    if path and path not in msg:
        msg = f"{path}: {msg}"
    return {"loc": loc, "msg": msg, "type": typ}


def validation_detail(errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per JSON path: the alternatives of a union (`alpha` as a number, or as a
    [lo, hi] list) become one message instead of several entries at the same path."""
    merged: dict[tuple, dict[str, Any]] = {}
    for err in map(_body_error, errors):
        key = tuple(err["loc"])
        if key in merged:
            merged[key]["msg"] += f"; or {err['msg'].split(': ', 1)[-1]}"
        else:
            merged[key] = err
    return list(merged.values())


# --------------------------------------------------------------------------- handlers


def _error(status: int, detail: Any, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _request_validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        detail = validation_detail(list(exc.errors()))
        whole_body = [d for d in detail if d["loc"] == ["body"]]
        if whole_body and whole_body[0]["type"] == "missing":
            whole_body[0]["msg"] = ("request body is empty: send the experiment spec as JSON "
                                    "(`{}` takes every default)")
        elif whole_body and whole_body[0]["type"] == "model_attributes_type":
            content_type = request.headers.get("content-type", "")
            if "json" not in content_type:  # the body was never read as JSON
                return _error(415, f"send the experiment spec as JSON with "
                                   f"`Content-Type: application/json` (got "
                                   f"{content_type or 'no Content-Type'!r})")
            whole_body[0]["msg"] = "the experiment spec must be a JSON object"
        return _error(422, detail)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        if exc.status_code == 400 and exc.detail == BODY_NOT_DECODED:  # e.g. invalid UTF-8
            return _error(422, [{"loc": ["body"], "msg": "malformed JSON: the body could not "
                                 "be decoded (send UTF-8 JSON)", "type": "json_invalid"}])
        return await http_exception_handler(request, exc)

    @app.exception_handler(LimitExceeded)
    async def _limit(request: Request, exc: LimitExceeded) -> JSONResponse:
        return _error(413, [{"loc": exc.loc, "msg": str(exc), "type": f"limit.{exc.limit}"}])

    @app.exception_handler(OverEstimate)
    async def _over_estimate(request: Request, exc: OverEstimate) -> JSONResponse:
        return _error(413, [r.item() for r in exc.refusals])

    @app.exception_handler(FieldError)
    async def _field(request: Request, exc: FieldError) -> JSONResponse:
        return _error(422, [{"loc": exc.loc, "msg": exc.msg, "type": exc.type}])

    @app.exception_handler(NotFound)
    async def _not_found(request: Request, exc: NotFound) -> JSONResponse:
        return _error(404, str(exc) or "experiment not found")

    @app.exception_handler(IllegalTransition)
    async def _conflict(request: Request, exc: IllegalTransition) -> JSONResponse:
        return _error(409, str(exc) or "illegal status transition")

    @app.exception_handler(Conflict)
    async def _conflict2(request: Request, exc: Conflict) -> JSONResponse:
        return _error(409, str(exc))

    async def _database_unavailable(request: Request, exc: Exception) -> JSONResponse:
        # the driver's message names hosts and ports: it goes to the log, not to the client
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        log.warning("database unavailable (%s %s): %s: %s", request.method, request.url.path,
                    type(exc).__name__, reason[0][:300] if reason else "")
        return _error(503, "database unavailable: the connection failed or was dropped; "
                           f"retry in {DATABASE_RETRY_AFTER_S} s",
                      headers={"Retry-After": str(DATABASE_RETRY_AFTER_S)})

    for transient in (OperationalError, DisconnectionError, InterfaceError):
        app.add_exception_handler(transient, _database_unavailable)

    @app.exception_handler(DataError)
    async def _unstorable(request: Request, exc: DataError) -> JSONResponse:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        return _error(422, [{"loc": ["request"], "type": "value_error.unstorable",
                             "msg": "a value in this request cannot be stored or compared "
                                    f"by the database: {reason[0][:200] if reason else exc}"}])

    @app.exception_handler(SchemaOutOfDate)
    async def _schema(request: Request, exc: SchemaOutOfDate) -> JSONResponse:
        return _error(503, f"database schema out of date: {exc} (run `advlab migrate`)")


# --------------------------------------------------------------------------- body size


class BodyLimitMiddleware:
    """Refuse request bodies over `max_bytes` with 413 before the app reads any of it.

    The body is buffered (it is at most `max_bytes`) and replayed to the app, so an oversize
    streamed body is detected before a single byte reaches the JSON parser."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS", "DELETE"):
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                await self._refuse(send, 400, "invalid Content-Length header")
                return
            if declared > self.max_bytes:
                await self._too_large(send, declared)
                return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._too_large(send, size)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        await self.app(scope, replaying(body, receive), send)

    async def _too_large(self, send: Any, size: int) -> None:
        await self._refuse(send, 413, f"request body of {size} bytes exceeds the limit "
                                      f"max_body_bytes = {self.max_bytes} "
                                      f"(configurable: ADVLAB_MAX_BODY_BYTES)")

    @staticmethod
    async def _refuse(send: Any, status: int, detail: str) -> None:
        body = json.dumps({"detail": detail}).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})

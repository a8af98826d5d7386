"""Who is calling, and may they write this? (`ADVLAB_AUTH=none|tokens`)

- `none` (the embedded default, bound to 127.0.0.1): every caller is the admin user "local".
- `tokens` (the lab server): every /v1 call needs `Authorization: Bearer <token>`; a missing or
  unknown token is a 401 with `WWW-Authenticate: Bearer`. Tokens are 256-bit random strings
  shown once at creation; the store keeps only their sha256 (a leaked database holds no usable
  credential) and the comparison of the stored hash is constant-time.
- Everyone may read (the server is lab-shared); only the owner or an admin may cancel, retry or
  delete (403 otherwise).
- Bad tokens are rate-limited per client IP in memory: after `auth_failures_per_minute` failures
  in a minute, 429 with Retry-After until the oldest failure leaves the window.
"""

from __future__ import annotations

import hashlib
import math
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

TOKEN_PREFIX = "advlab_"
LOCAL_USER = "local"
WINDOW_S = 60.0


@dataclass(frozen=True)
class Principal:
    name: str
    is_admin: bool


class Unauthorized(Exception):
    """401: no valid bearer token."""


class Forbidden(Exception):
    """403: authenticated, but not allowed to write this resource."""


class TooManyRequests(Exception):
    """429 with Retry-After (token failures here; quotas in service.quotas)."""

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = max(int(retry_after_s), 1)


def generate_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class FailureLimiter:
    """Per-key sliding window of failure times (in memory: one API process per lab server)."""

    def __init__(self, per_minute: int, clock=time.monotonic) -> None:
        self.per_minute, self.clock = per_minute, clock
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _window(self, key: str, now: float) -> deque[float]:
        times = self._failures.setdefault(key, deque())
        while times and now - times[0] >= WINDOW_S:
            times.popleft()
        return times

    def retry_after(self, key: str) -> int | None:
        """Seconds until `key` may try again, or None when it is not blocked."""
        with self._lock:
            now = self.clock()
            times = self._window(key, now)
            if len(times) < self.per_minute:
                if not times:
                    self._failures.pop(key, None)
                return None
            return math.ceil(WINDOW_S - (now - times[0]))

    def record(self, key: str) -> None:
        with self._lock:
            now = self.clock()
            self._window(key, now).append(now)


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else ""


# documents the scheme in OpenAPI (`/docs` gets an Authorize button); the header is parsed below
bearer_scheme = HTTPBearer(auto_error=False, scheme_name="bearer", description=(
    "API token from `advlab tokens create NAME` (only with ADVLAB_AUTH=tokens)."))


def current_user(
    request: Request,
    _documented: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)] = None,
) -> Principal:
    """The caller (cached per request by FastAPI); raises Unauthorized / TooManyRequests."""
    settings = request.app.state.settings
    if settings.auth == "none":
        request.state.user = LOCAL_USER
        return Principal(LOCAL_USER, True)
    limiter: FailureLimiter = request.app.state.auth_failures
    client = request.client.host if request.client else "unknown"
    wait = limiter.retry_after(client)
    if wait is not None:
        raise TooManyRequests(f"too many failed authentications from {client}; "
                              f"retry in {wait} s", wait)
    token = _bearer(request)
    if token is None:
        raise Unauthorized("missing `Authorization: Bearer <token>` header")
    user = request.app.state.store.user_for_token(hash_token(token)) if token else None
    if user is None:
        limiter.record(client)
        raise Unauthorized("invalid or revoked token")
    request.state.user = user.name  # for the access log
    return Principal(user.name, user.is_admin)


UserDep = Annotated[Principal, Depends(current_user)]


def ensure_can_write(user: Principal, owner: str | None, what: str) -> None:
    """Owner or admin; rows from before ownership (owner None) are admin-only."""
    if user.is_admin or (owner is not None and owner == user.name):
        return
    raise Forbidden(f"{what} belongs to {owner or 'nobody'!s}; only its owner or an admin may "
                    "change it")


def install_auth(app: FastAPI) -> None:
    """Exception handlers for 401/403/429 and the per-app failure limiter."""
    app.state.auth_failures = FailureLimiter(app.state.settings.auth_failures_per_minute)

    @app.exception_handler(Unauthorized)
    async def _unauthorized(request: Request, exc: Unauthorized) -> JSONResponse:
        error = "invalid_token" if request.headers.get("authorization") else "invalid_request"
        return JSONResponse({"detail": str(exc)}, status_code=401, headers={
            "WWW-Authenticate": f'Bearer realm="advlab", error="{error}"'})

    @app.exception_handler(Forbidden)
    async def _forbidden(request: Request, exc: Forbidden) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=403)

    @app.exception_handler(TooManyRequests)
    async def _too_many(request: Request, exc: TooManyRequests) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=429,
                            headers={"Retry-After": str(exc.retry_after_s)})

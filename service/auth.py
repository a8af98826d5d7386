"""Who is calling, and may they write this? (`ADVLAB_AUTH=none|tokens`)

- `none` (the embedded default, bound to 127.0.0.1): every caller is the admin user "local".
- `tokens` (the lab server): every /v1 call needs `Authorization: Bearer <token>`; a missing or
  unknown token is a 401 with `WWW-Authenticate: Bearer`. Tokens are 256-bit random strings
  shown once at creation; the store keeps only their sha256 (a leaked database holds no usable
  credential) and the comparison of the stored hash is constant-time.
- The dashboard's session cookie (service.web_session) is accepted in place of the header, with
  a CSRF token on writes.
- Everyone may read (the server is lab-shared); only the owner or an admin may cancel, retry or
  delete (403 otherwise).
- Bad tokens are rate-limited per (client address, token prefix) (service.failure_limiter):
  after `auth_failures_per_minute` failures in a minute, that pair gets 429 with Retry-After
  until the oldest failure leaves the window. The token is checked first: a valid token is never
  refused, so failures from one address cannot lock out the lab. The client address is the
  socket's peer; the API trusts `X-Forwarded-For` only from `ADVLAB_TRUSTED_PROXIES` (uvicorn's
  `--forwarded-allow-ips`, set by launcher.serve.api_command).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer

from service.failure_limiter import Limiter, failure_key, make_limiter

TOKEN_PREFIX = "advlab_"
LOCAL_USER = "local"
SESSION_COOKIE = "advlab_session"  # the dashboard's login session (service.web_session)
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


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


def csrf_token(session_token: str) -> str:
    return hashlib.sha256(b"advlab-csrf:" + session_token.encode()).hexdigest()[:40]


def check_csrf(request: Request, session_token: str, sent: str | None = None) -> None:
    """403 unless a cookie-authenticated write carries the session's CSRF token."""
    if request.method in SAFE_METHODS:
        return
    sent = sent if sent is not None else request.headers.get(CSRF_HEADER, "")
    if not hmac.compare_digest(sent.encode(), csrf_token(session_token).encode()):
        raise Forbidden(f"a write authenticated by the session cookie needs the {CSRF_HEADER} "
                        "header of the dashboard page (or use a bearer token)")


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else ""


# documents the schemes in OpenAPI (`/docs` gets an Authorize button); both are parsed below
bearer_scheme = HTTPBearer(auto_error=False, scheme_name="bearer", description=(
    "API token from `advlab tokens create NAME` (only with ADVLAB_AUTH=tokens)."))
cookie_scheme = APIKeyCookie(name=SESSION_COOKIE, auto_error=False, scheme_name="session",
                             description="The dashboard's session cookie (set by POST /login); "
                                         "writes also need the X-CSRF-Token header.")


def current_user(
    request: Request,
    _documented: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)] = None,
    _session: Annotated[str | None, Depends(cookie_scheme)] = None,
) -> Principal:
    """The caller (cached per request by FastAPI); raises Unauthorized / TooManyRequests."""
    settings = request.app.state.settings
    if settings.auth == "none":
        request.state.user = LOCAL_USER
        return Principal(LOCAL_USER, True)
    token, via_cookie = _bearer(request), False
    if token is None and request.cookies.get(SESSION_COOKIE):
        token, via_cookie = request.cookies[SESSION_COOKIE], True  # the dashboard's session
    if token is None:
        raise Unauthorized("missing `Authorization: Bearer <token>` header")
    user = request.app.state.store.user_for_token(hash_token(token)) if token else None
    if user is None:
        refuse_bad_token(request, token)
    if via_cookie:
        check_csrf(request, token)
    request.state.user = user.name  # for the access log
    return Principal(user.name, user.is_admin)


def client_address(request: Request) -> str:
    """The socket peer (a trusted proxy's X-Forwarded-For, once uvicorn has applied it)."""
    return request.client.host if request.client else "unknown"


def refuse_bad_token(request: Request, token: str) -> None:
    """Count a failed token against (client, token prefix); always raises: 429 once that pair
    is over the limit, else 401."""
    limiter: Limiter = request.app.state.auth_failures
    client = client_address(request)
    key = failure_key(client, token)
    wait = limiter.retry_after(key)
    if wait is not None:
        raise TooManyRequests(f"too many failed authentications from {client} with this token; "
                              f"retry in {wait} s", wait)
    limiter.record(key)
    raise Unauthorized("invalid or revoked token")


UserDep = Annotated[Principal, Depends(current_user)]


def ensure_can_write(user: Principal, owner: str | None, what: str) -> None:
    """Owner or admin; rows from before ownership (owner None) are admin-only."""
    if user.is_admin or (owner is not None and owner == user.name):
        return
    raise Forbidden(f"{what} belongs to {owner or 'nobody'!s}; only its owner or an admin may "
                    "change it")


def install_auth(app: FastAPI) -> None:
    """Exception handlers for 401/403/429 and the failure limiter (per app, or shared in Redis)."""
    settings = app.state.settings
    app.state.auth_failures = make_limiter(settings.auth_failures_per_minute, settings.limiter_url)

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

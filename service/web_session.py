"""The dashboard's login session (ADVLAB_AUTH=tokens): a token typed into /login becomes an
`HttpOnly`, `SameSite=Strict` cookie (`Secure` when the request came over TLS), so the pages,
their plots, live events and in-page actions authenticate as that token's user.

- The cookie holds the API token itself: no second credential to store or leak, and revoking
  the token (`advlab tokens revoke`) ends every session made from it. Logout clears the cookie.
- CSRF: a write (POST/PUT/PATCH/DELETE) authenticated by the cookie must carry
  `X-CSRF-Token`, a value derived from the session token (sha256, so it reveals nothing) that the
  pages embed in `<meta name="csrf-token">`; another site can neither read it nor make a browser
  send a custom header without CORS, which stays off. SameSite=Strict is the second wall.
  Bearer-token requests need no CSRF token (a browser never adds one on its own).
- Pages (`page_user`) answer 303 to `/login?next=...` without a valid session; with auth off every
  caller is the admin user `local`, as on the API.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from fastapi import Depends, FastAPI, Request
from fastapi.responses import RedirectResponse

from service.auth import LOCAL_USER, SESSION_COOKIE, Principal, csrf_token, hash_token


CSRF_FIELD = "csrf"  # the CSRF token's name in a form (logout)


class LoginRequired(Exception):
    """A dashboard page without a valid session: 303 to the login page (service.main)."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


def session_user(request: Request) -> Principal | None:
    """The user of a valid session cookie, or None (no cookie, or a revoked/unknown token)."""
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    user = request.app.state.store.user_for_token(hash_token(token))
    if user is None:
        return None
    request.state.user = user.name
    request.state.csrf = csrf_token(token)
    return Principal(user.name, user.is_admin)


def safe_next(path: str | None) -> str:
    """Only a local path may follow a login (no open redirect to another site)."""
    if not path or not path.startswith("/") or path.startswith("//") or "\\" in path:
        return "/"
    return path


def page_user(request: Request) -> Principal:
    """The caller of a dashboard page; LoginRequired (→ 303 /login) without a session."""
    if request.app.state.settings.auth == "none":
        return Principal(LOCAL_USER, True)
    user = session_user(request)
    if user is None:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise LoginRequired(target)
    return user


PageUserDep = Annotated[Principal, Depends(page_user)]


def login_url(next_path: str) -> str:
    return "/login?next=" + quote(safe_next(next_path), safe="/")


def install_sessions(app: FastAPI) -> None:
    """A dashboard page without a session → 303 to the login page."""

    @app.exception_handler(LoginRequired)
    async def _login_required(request: Request, exc: LoginRequired) -> RedirectResponse:
        return RedirectResponse(login_url(exc.next_path), status_code=303)

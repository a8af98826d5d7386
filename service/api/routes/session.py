"""Login, logout, and the API docs behind the login (ADVLAB_AUTH=tokens; service.web_session).

`POST /login` (form: token, next) sets the session cookie and redirects to `next` (a local
path); a bad token is counted by the same failure limiter as the API's bearer tokens and shows
the form again (401, or 429 with Retry-After). `POST /logout` (form: csrf) clears the cookie.
With tokens on, `/docs` needs the session and `/openapi.json` the session or a bearer token
(create_app turns FastAPI's open ones off); with auth off they are FastAPI's own.
"""

from __future__ import annotations

from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from service.auth import (SESSION_COOKIE, TooManyRequests, Unauthorized, check_csrf, current_user,
                          hash_token, refuse_bad_token)
from service.web_session import CSRF_FIELD, page_user, safe_next

router = APIRouter(include_in_schema=False)
MAX_FORM_BYTES = 4096


async def _form(request: Request) -> dict[str, str]:
    body = (await request.body())[:MAX_FORM_BYTES].decode("utf-8", "replace")
    return {k: v[0] for k, v in parse_qs(body, keep_blank_values=True).items()}


def _login_page(request: Request, next_path: str, error: str = "", status_code: int = 200,
                headers: dict[str, str] | None = None) -> HTMLResponse:
    from service.api.routes.dashboard import page

    response = page(request, "login.html", {"next": safe_next(next_path), "error": error},
                    status_code=status_code)
    response.headers.update(headers or {})
    return response


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: str = "/") -> Response:
    if request.app.state.settings.auth == "none":
        return RedirectResponse(safe_next(next), status_code=303)
    return _login_page(request, next)


@router.post("/login")
async def login(request: Request) -> Response:
    form = await _form(request)
    next_path, token = safe_next(form.get("next")), form.get("token", "").strip()
    if request.app.state.settings.auth == "none":
        return RedirectResponse(next_path, status_code=303)
    if not token or request.app.state.store.user_for_token(hash_token(token)) is None:
        try:
            refuse_bad_token(request, token)
        except TooManyRequests as exc:
            return _login_page(request, next_path, str(exc), 429,
                               {"Retry-After": str(exc.retry_after_s)})
        except Unauthorized:
            return _login_page(request, next_path, "invalid or revoked token", 401)
    settings = request.app.state.settings
    response = RedirectResponse(next_path, status_code=303)
    response.set_cookie(SESSION_COOKIE, token, max_age=settings.session_max_age_s, path="/",
                        httponly=True, samesite="strict", secure=request.url.scheme == "https")
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        check_csrf(request, token, sent=(await _form(request)).get(CSRF_FIELD, ""))
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict",
                           secure=request.url.scheme == "https")
    return response


# the docs behind the login: mounted by create_app only when ADVLAB_AUTH=tokens
docs_router = APIRouter(include_in_schema=False)


@docs_router.get("/openapi.json", dependencies=[Depends(current_user)])
def openapi(request: Request) -> JSONResponse:
    return JSONResponse(request.app.openapi())


@docs_router.get("/docs", dependencies=[Depends(page_user)])
def docs(request: Request) -> HTMLResponse:
    return get_swagger_ui_html(openapi_url="/openapi.json", title="advlab API")

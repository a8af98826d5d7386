"""The FastAPI app: `create_app(settings)` builds one (tests make several); `app` is the one
`uvicorn service.main:app` serves with the environment's settings.

The lifespan opens the store with `check_schema=True`: on a database that is not at the Alembic
head the app refuses to start (SchemaOutOfDate) rather than corrupt it — run `advlab migrate`.
The app is given a `JobQueue` (lab.queue; default: the Celery broker of its settings), so the
API sends jobs without importing the workers.
"""

from __future__ import annotations

import threading
from contextlib import asynccontextmanager
from typing import AsyncIterator

from fastapi import FastAPI

from advcore import __version__
from service import admission
from service.api.routes import api_router, docs_router, root_router
from lab.config import Settings, get_settings
from lab.queue import CeleryQueue, JobQueue
from service.errors import BodyLimitMiddleware, install_error_handlers
from fastapi.middleware.cors import CORSMiddleware
from service.auth import install_auth
from service.web_session import install_sessions
from service.hardening import RequestContextMiddleware, StrictJsonMiddleware
from lab.logging import configure_logging
from service.schemas import Error
from service.telemetry import RequestTimer, Telemetry

DESCRIPTION = """Experiments on the theory of adversarial examples.

POST an experiment spec to `/v1/experiments`; a worker runs it; read its status, metric series
and correlation trajectories back. Before a job is stored it is priced (FLOPs, peak memory,
stored bytes) and admitted against its queue's limits; `?dry_run=true` on `POST /v1/experiments`
and `POST /v1/sweeps` returns that estimate without storing anything. Errors: 422 with the JSON
path of each bad field, 413 for an oversize body, a spec over a configured limit, or an estimate
over a limit (naming the estimate, the limit and the field to lower), 404 for an unknown id, 409
for a transition the job's status does not allow, 503 when the database schema is out of date."""


DATABASE_UNAVAILABLE = {503: {
    "model": Error, "description": "The database is unreachable or dropped the connection "
                                   "(or its schema is out of date); retry after `Retry-After` s.",
    "headers": {"Retry-After": {"description": "Seconds to wait before retrying.",
                                "schema": {"type": "integer"}}}}}


def _api_responses(settings: Settings) -> dict:
    """What any /v1 route may answer besides its own codes (so the OpenAPI schema is complete:
    tests/fuzz checks every response against it)."""
    responses: dict = dict(DATABASE_UNAVAILABLE)
    if settings.auth == "tokens":
        responses[401] = {"model": Error, "description": "Missing or invalid bearer token.",
                          "headers": {"WWW-Authenticate": {"schema": {"type": "string"}}}}
        responses[403] = {"model": Error, "description": "Another user's resource, or a write "
                                                         "authenticated by the session cookie "
                                                         "without its X-CSRF-Token."}
        responses[429] = {"model": Error, "description": "Too many failed tokens from this "
                                                         "client (or a quota): retry later.",
                          "headers": {"Retry-After": {"schema": {"type": "integer"}}}}
    return responses


def create_app(settings: Settings | None = None, jobs: JobQueue | None = None) -> FastAPI:
    """The API on `settings`, sending jobs to `jobs` (default: the Celery broker of `settings`)."""
    settings = settings or get_settings()
    jobs = jobs or CeleryQueue(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from lab.store import open_store

        store = open_store(settings.resolved_database_url, check_schema=True,
                           settings=settings)
        app.state.store = store
        app.state.telemetry = Telemetry(store, jobs, settings)
        # the cost functions live next to torch code: load them now, off the request path
        threading.Thread(target=admission.warm_up, name="advlab-cost-warm-up",
                         daemon=True).start()
        try:
            yield
        finally:
            store.close()

    tokens = settings.auth == "tokens"  # then the docs and the schema are behind the login
    app = FastAPI(title="advlab", version=__version__, description=DESCRIPTION,
                  lifespan=lifespan, docs_url=None if tokens else "/docs",
                  redoc_url=None if tokens else "/redoc",
                  openapi_url=None if tokens else "/openapi.json")
    app.state.settings = settings
    app.state.jobs = jobs
    app.state.enqueue = jobs.send  # (experiment id, its row's queue): service.experiments.Enqueue
    install_error_handlers(app)
    install_auth(app)  # 401/403/429 and the token-failure limiter
    app.include_router(api_router, responses=_api_responses(settings))
    app.include_router(root_router)
    if tokens:
        app.include_router(docs_router)
    install_sessions(app)
    # the last added is outermost: the timer sees every request, 413s included; the size limit
    # refuses before anything reads the body
    app.add_middleware(StrictJsonMiddleware)  # duplicate keys, NaN → 422
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    if settings.cors_origin_list:  # CORS is off unless origins are configured
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origin_list,
                           allow_methods=["GET", "POST", "DELETE"],
                           allow_headers=["Authorization", "Content-Type", "Idempotency-Key",
                                          "X-Request-ID"],
                           expose_headers=["X-Request-ID", "Location", "Retry-After"])
    app.add_middleware(RequestContextMiddleware)  # request id, access log, security headers
    app.add_middleware(RequestTimer)
    return app


configure_logging(get_settings().log_format)  # JSON lines for advlab.*, service.*, worker.*
app = create_app()  # cheap: the store is opened by the lifespan, not here

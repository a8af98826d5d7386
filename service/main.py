"""The FastAPI app: `create_app(settings)` builds one (tests make several); `app` is the one
`uvicorn service.main:app` serves with the environment's settings.

The lifespan opens the store with `check_schema=True`: on a database that is not at the Alembic
head the app refuses to start (SchemaOutOfDate) rather than corrupt it — run `advlab migrate`.
The enqueue function is bound to the app's settings, so an app always sends to its own broker.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import AsyncIterator, Callable

from fastapi import FastAPI

from advcore import __version__
from service.api.routes import api_router, root_router
from service.api.routes.health import RequestTimer, Telemetry
from service.config import Settings, get_settings
from service.errors import BodyLimitMiddleware, install_error_handlers

DESCRIPTION = """Experiments on the theory of adversarial examples.

POST an experiment spec to `/v1/experiments`; a worker runs it; read its status, metric series
and correlation trajectories back. Errors: 422 with the JSON path of each bad field, 413 for an
oversize body or a spec over a configured limit, 404 for an unknown id, 409 for a transition the
job's status does not allow, 503 when the database schema is out of date."""


def _enqueue_for(settings: Settings) -> Callable[[str], None]:
    def enqueue(experiment_id: str) -> None:
        from worker.enqueue import enqueue_experiment  # sends by task name: no torch import

        enqueue_experiment(experiment_id, settings)

    return enqueue


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from service.store import open_store

        store = open_store(settings.resolved_database_url, check_schema=True)
        app.state.store = store
        app.state.telemetry = Telemetry(store, settings)
        try:
            yield
        finally:
            close = getattr(store, "close", None) or getattr(store, "dispose", None)
            if close is not None:
                close()

    app = FastAPI(title="advlab", version=__version__, description=DESCRIPTION,
                  lifespan=lifespan)
    app.state.settings = settings
    app.state.enqueue = _enqueue_for(settings)
    install_error_handlers(app)
    app.include_router(api_router)
    app.include_router(root_router)
    # the last added is outermost: the timer sees every request, 413s included; the size limit
    # refuses before anything reads the body
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(RequestTimer)
    return app


app = create_app()  # cheap: the store is opened by the lifespan, not here

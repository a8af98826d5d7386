"""All routers in one place: the versioned API under /v1 and the Prometheus endpoint at /metrics."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from service.api.routes import experiments, health
from service.auth import current_user
from service.api.routes import dashboard, events, sweeps
from service.api.routes import compare, export, plots, templates
from service.api.routes import session
from service.api.routes import reproductions, reproductions_page

# ADVLAB_AUTH=tokens: every /v1 route needs a bearer token (/v1/health is on the
# root router below and stays open for probes)
api_router = APIRouter(prefix="/v1", dependencies=[Depends(current_user)])
api_router.include_router(experiments.router)
api_router.include_router(events.router)
api_router.include_router(sweeps.router)
api_router.include_router(reproductions.router)
api_router.include_router(plots.router)  # H
api_router.include_router(export.router)  # H
api_router.include_router(compare.router)  # H
api_router.include_router(templates.router)  # H

# /v1/health and /metrics (Prometheus scrapes a fixed, unversioned path)
root_router = APIRouter()
root_router.include_router(health.router)
root_router.include_router(session.router)  # /login, /logout
root_router.include_router(dashboard.static_router)
root_router.include_router(dashboard.router)  # I: the web dashboard at / (behind the login)
root_router.include_router(reproductions_page.router)  # /reproductions pages

docs_router = session.docs_router  # /docs and /openapi.json behind the login (tokens only)

__all__ = ["api_router", "docs_router", "root_router"]

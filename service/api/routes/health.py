"""Liveness/readiness (GET /v1/health) and Prometheus metrics (GET /metrics; the registry and
its collectors are service.telemetry's)."""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from advcore import __version__
from service.api.deps import JobsDep, SettingsDep, StoreDep
from lab.config import Settings
from service.schemas import Error, Health

router = APIRouter(tags=["health"])


@router.get("/v1/health", response_model=Health, summary="Liveness and readiness",
            description="Pings the database and the broker. 200 when both answer, 503 (same "
                        "body, status `degraded`) when either does not.",
            responses={503: {"model": Health, "description": "Database or broker unreachable."}})
def health(store: StoreDep, jobs: JobsDep) -> Response:
    checks: dict[str, str] = {}
    for name, ping in (("database", store.ping), ("broker", jobs.ping)):
        try:
            ping()
            checks[name] = "ok"
        except Exception as exc:  # report, don't raise: this is the readiness probe
            checks[name] = f"error: {type(exc).__name__}: {exc}"[:300]
    ok = all(v == "ok" for v in checks.values())
    body = Health(status="ok" if ok else "degraded", version=__version__, **checks)
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503)


def _may_scrape(request: Request, settings: Settings) -> bool:
    """Open with auth off (the embedded default, bound to 127.0.0.1) unless a scrape token is
    set; with tokens on: the scrape token (ADVLAB_METRICS_TOKEN) or an address in
    ADVLAB_METRICS_ALLOW_IPS. User tokens do not open it: it shows every user's activity."""
    if settings.auth == "none" and not settings.metrics_token:
        return True
    client = request.client.host if request.client else ""
    if client and client in settings.metrics_allow_list:
        return True
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return bool(settings.metrics_token) and scheme.lower() == "bearer" and hmac.compare_digest(
        token.strip().encode(), settings.metrics_token.encode())


@router.get("/metrics", summary="Prometheus metrics", response_class=Response,
            description="Experiments by status and by queue, broker depth per queue, busy "
                        "and live workers, running jobs' heartbeat age, re-queues, job "
                        "durations, HTTP request latencies by route template and process "
                        "metrics, in the Prometheus text format. With "
                        "ADVLAB_AUTH=tokens: `Authorization: Bearer $ADVLAB_METRICS_TOKEN`, or a "
                        "client address in ADVLAB_METRICS_ALLOW_IPS.",
            responses={200: {"content": {CONTENT_TYPE_LATEST: {}},
                             "description": "Prometheus exposition."},
                       401: {"model": Error, "description": "No valid scrape token.",
                             "headers": {"WWW-Authenticate": {"schema": {"type": "string"}}}}})
def metrics(request: Request, settings: SettingsDep) -> Response:
    if not _may_scrape(request, settings):
        return JSONResponse({"detail": "/metrics needs the scrape token (ADVLAB_METRICS_TOKEN) "
                                       "or an address in ADVLAB_METRICS_ALLOW_IPS"},
                            status_code=401,
                            headers={"WWW-Authenticate": 'Bearer realm="advlab-metrics"'})
    return Response(generate_latest(request.app.state.telemetry.registry),
                    media_type=CONTENT_TYPE_LATEST)

"""Liveness/readiness (GET /v1/health) and Prometheus metrics (GET /metrics; the registry and
its collectors are service.telemetry's)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from advcore import __version__
from service.api.deps import JobsDep, StoreDep
from service.schemas import Health

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


@router.get("/metrics", summary="Prometheus metrics", response_class=Response,
            description="Experiments by status, broker queue depth, job durations and HTTP "
                        "request latencies, in the Prometheus text format.",
            responses={200: {"content": {CONTENT_TYPE_LATEST: {}},
                             "description": "Prometheus exposition."}})
def metrics(request: Request) -> Response:
    return Response(generate_latest(request.app.state.telemetry.registry),
                    media_type=CONTENT_TYPE_LATEST)

"""Prometheus telemetry of one app: request latencies (the RequestTimer middleware) and
scrape-time job gauges (JobCollector), in a registry per app (see `Telemetry`), so several apps
in one process (tests) never share or double-register series. Job counts are read from the store
at scrape time — the database, not the broker, is the source of truth for job state — and the
broker's own queue depth is reported beside them (a difference means messages were lost and the
reaper will re-send).
"""

from __future__ import annotations

import logging
import time
from typing import Any, Iterable

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily

from lab.queue import JobQueue
from lab.status import STATUSES
from lab.store.base import ExperimentFilter, Store

log = logging.getLogger("advlab.api")

JOB_BUCKETS = (1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 24 * 3600)
RECENT_JOBS = 200  # the job-duration histogram covers this many most recent finished jobs


def queue_depth(jobs: JobQueue) -> int | None:
    """Messages waiting in the broker queue, or None when the broker cannot tell us."""
    try:
        return jobs.depth()
    except Exception as exc:
        log.warning("could not read the broker queue depth: %s", exc)
        return None


class JobCollector:
    """Scrape-time gauges/histograms computed from the store and the broker."""

    def __init__(self, store: Store, jobs: JobQueue) -> None:
        self.store, self.jobs = store, jobs

    def collect(self) -> Iterable[Any]:
        counts = self.store.counts_by_status()
        jobs = GaugeMetricFamily("advlab_experiments", "Experiments by status.",
                                 labels=["status"])
        for status in STATUSES:
            jobs.add_metric([status], float(counts.get(status, 0)))
        yield jobs

        depth = queue_depth(self.jobs)
        queue = GaugeMetricFamily("advlab_queue_depth",
                                  "Messages waiting in the broker queue (not yet taken).")
        if depth is not None:
            queue.add_metric([], float(depth))
        yield queue

        yield self._durations()

    def _durations(self) -> HistogramMetricFamily:
        page = self.store.list_experiments(
            ExperimentFilter(status=("succeeded", "failed")), limit=RECENT_JOBS)
        durations = [(e.finished_at - e.started_at).total_seconds() for e in page.items
                     if e.started_at is not None and e.finished_at is not None]
        buckets = [(str(b), float(sum(d <= b for d in durations))) for b in JOB_BUCKETS]
        buckets.append(("+Inf", float(len(durations))))
        family = HistogramMetricFamily(
            "advlab_job_duration_seconds",
            f"Run time (start to finish) of the {RECENT_JOBS} most recent finished experiments.")
        family.add_metric([], buckets, sum_value=sum(durations))
        return family


class Telemetry:
    """Per-app registry: request latencies (middleware) plus the scrape-time job collector."""

    def __init__(self, store: Store, jobs: JobQueue) -> None:
        self.registry = CollectorRegistry()
        self.requests = Histogram(
            "advlab_http_request_duration_seconds", "HTTP request latency by route.",
            ["method", "route", "status"], registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
        self.registry.register(JobCollector(store, jobs))


class RequestTimer:
    """ASGI middleware observing each request's latency under its route template
    (`/v1/experiments/{experiment_id}`), matched against the app's OpenAPI paths so that a
    label never carries an id (bounded cardinality)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self._templates: list[tuple[Any, str]] | None = None

    def _route(self, app: Any, path: str) -> str:
        if self._templates is None:
            from starlette.routing import compile_path

            self._templates = [(compile_path(p)[0], p) for p in app.openapi()["paths"]]
        return next((p for regex, p in self._templates if regex.match(path)), "other")

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status_code = 500

        async def send_status(message: dict) -> None:
            nonlocal status_code
            if message["type"] == "http.response.start":
                status_code = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            app = scope.get("app")
            telemetry = getattr(app.state, "telemetry", None) if app is not None else None
            if telemetry is not None:
                telemetry.requests.labels(
                    scope["method"], self._route(app, scope["path"]), str(status_code)
                ).observe(time.perf_counter() - start)

"""Prometheus telemetry of one app: request latencies (the RequestTimer middleware) and
scrape-time job gauges (JobCollector), in a registry per app (see `Telemetry`), so several apps
in one process (tests) never share or double-register series. Job counts are read from the store
at scrape time — the database, not the broker, is the source of truth for job state — and the
broker's own queue depth is reported beside them (a difference means messages were lost and the
reaper will re-send).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Iterable

from prometheus_client import (CollectorRegistry, GCCollector, Histogram, PlatformCollector,
                               ProcessCollector)
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily

from lab.clock import utcnow
from lab.config import Settings
from lab.queue import JobQueue
from lab.status import STATUSES
from lab.store.base import ExperimentFilter, Operations, Store
from service.asgi import StatusRecorder

log = logging.getLogger("advlab.api")

JOB_BUCKETS = (1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 24 * 3600)
RECENT_JOBS = 200  # the job-duration histogram covers this many most recent finished jobs


HEARTBEAT_BUCKETS = (5, 15, 30, 60, 120, 300, 900, 3600)
WORKER_CENSUS_TTL_S = 10.0  # a remote-control census answers scrapes this long


def queue_depth(jobs: JobQueue, queue: str | None = None) -> int | None:
    """Messages waiting in a broker queue, or None when the broker cannot tell us."""
    try:
        return jobs.depth(queue)
    except Exception as exc:
        log.warning("could not read the depth of broker queue %s: %s", queue, exc)
        return None


class JobCollector:
    """Scrape-time gauges/histograms computed from the store and the broker."""

    def __init__(self, store: Store, jobs: JobQueue, settings: Settings) -> None:
        self.store, self.jobs, self.settings = store, jobs, settings
        # the configured queues: a bounded label set (default, cpu and gpu queues)
        self.queues = sorted({settings.queue, settings.resolved_cpu_queue, settings.gpu_queue})
        self._census: tuple[float, dict[str, list[str]] | None] | None = None
        self._census_lock = threading.Lock()

    def collect(self) -> Iterable[Any]:
        counts = self.store.counts_by_status()
        jobs = GaugeMetricFamily("advlab_experiments", "Experiments by status.",
                                 labels=["status"])
        for status in STATUSES:
            jobs.add_metric([status], float(counts.get(status, 0)))
        yield jobs

        queue = GaugeMetricFamily(
            "advlab_queue_depth", "Messages waiting in each configured broker queue (not yet "
                                  "taken); absent for a queue the broker cannot measure.",
            labels=["queue"])
        for name in self.queues:
            depth = queue_depth(self.jobs, name)
            if depth is not None:
                queue.add_metric([name], float(depth))
        yield queue

        ops = self.store.operations()
        yield from self._active(ops)
        yield from self._workers(ops)
        yield from self._heartbeats(ops)
        requeued = GaugeMetricFamily(
            "advlab_experiments_requeued", "Experiments in the store that took more than one "
                                           "attempt (re-queued by the reaper or a lost worker).")
        requeued.add_metric([], float(ops.requeued_experiments))
        yield requeued
        requeues = GaugeMetricFamily(
            "advlab_experiment_requeues", "Attempts beyond the first, summed over the "
                                          "experiments in the store.")
        requeues.add_metric([], float(ops.requeues))
        yield requeues
        yield self._durations()

    def _queue_label(self, queue: str | None) -> str:
        """A row's queue as a label: rows from before routing ran on the default queue, and a
        queue no longer configured is `other` (bounded cardinality)."""
        queue = queue or self.settings.queue
        return queue if queue in self.queues else "other"

    def _active(self, ops: Operations) -> Iterable[Any]:
        family = GaugeMetricFamily("advlab_experiments_active",
                                   "Queued and running experiments by the queue they were "
                                   "routed to (the store's view, beside the broker's depth).",
                                   labels=["queue", "status"])
        values = {(q, s): 0.0 for q in self.queues for s in ("queued", "running")}
        for (queue, status), n in ops.active_by_queue.items():
            key = (self._queue_label(queue), status)
            values[key] = values.get(key, 0.0) + n
        for (queue, status), n in sorted(values.items()):
            family.add_metric([queue, status], n)
        yield family

    def _workers(self, ops: Operations) -> Iterable[Any]:
        now = utcnow()
        fresh = {job.worker for job in ops.running if job.worker and job.heartbeat_at
                 and (now - job.heartbeat_at).total_seconds() <= self.settings.stale_after_s}
        busy = GaugeMetricFamily(
            "advlab_workers_busy", "Workers running a job whose heartbeat is fresh (younger "
                                   "than ADVLAB_STALE_AFTER_S), from the store.")
        busy.add_metric([], float(len(fresh)))
        yield busy
        census = self._worker_census()
        if census is None:
            return  # no remote control on this broker: the metric is absent, not zero
        alive = GaugeMetricFamily(
            "advlab_workers_alive", "Workers answering Celery's remote control, by the "
                                    "configured queue they consume.", labels=["queue"])
        for name in self.queues:
            alive.add_metric([name], float(sum(name in qs for qs in census.values())))
        yield alive

    def _worker_census(self) -> dict[str, list[str]] | None:
        with self._census_lock:
            now = time.monotonic()
            if self._census is None or now - self._census[0] > WORKER_CENSUS_TTL_S:
                try:
                    census = self.jobs.workers()
                except Exception as exc:
                    log.warning("could not ask the workers over remote control: %s", exc)
                    census = None
                self._census = (time.monotonic(), census)
            return self._census[1]

    def _heartbeats(self, ops: Operations) -> Iterable[Any]:
        now = utcnow()
        ages = [(now - (job.heartbeat_at or job.started_at)).total_seconds()
                for job in ops.running if (job.heartbeat_at or job.started_at) is not None]
        family = HistogramMetricFamily(
            "advlab_running_heartbeat_age_seconds",
            "Age of the last heartbeat (or the start) of each running experiment.")
        buckets = [(str(b), float(sum(a <= b for a in ages))) for b in HEARTBEAT_BUCKETS]
        buckets.append(("+Inf", float(len(ages))))
        family.add_metric([], buckets, sum_value=sum(ages))
        yield family
        oldest = GaugeMetricFamily("advlab_running_heartbeat_age_max_seconds",
                                   "The oldest heartbeat among running experiments (0: none).")
        oldest.add_metric([], max(ages, default=0.0))
        yield oldest

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
    """Per-app registry: request latencies (middleware), the scrape-time job collector and the
    process's own CPU, memory, file descriptors, GC and Python version."""

    def __init__(self, store: Store, jobs: JobQueue, settings: Settings) -> None:
        self.registry = CollectorRegistry()
        self.requests = Histogram(
            "advlab_http_request_duration_seconds", "HTTP request latency by route template.",
            ["method", "route", "status"], registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
        self.registry.register(JobCollector(store, jobs, settings))
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)


def route_templates(app: Any) -> list[tuple[Any, str]]:
    """(compiled path, template) of every route of `app`, API and dashboard alike, in routing
    order; FastAPI's included routers are walked to the routes' full templates."""
    from starlette.routing import compile_path

    try:
        from fastapi.routing import iter_route_contexts  # FastAPI >= 0.165: nested routers
        routes: Iterable[Any] = iter_route_contexts(app.routes)
    except ImportError:  # older FastAPI flattens included routes into app.routes
        routes = app.routes
    templates = []
    for route in routes:
        template = getattr(route, "path_format", None) or getattr(route, "path", None)
        if template:
            templates.append((compile_path(template)[0], template))
    return templates


class RequestTimer:
    """ASGI middleware observing each request's latency under its route template
    (`/v1/experiments/{experiment_id}`, `/experiments/{experiment_id}` for a dashboard page), the
    path of the app's route that matches the request, so that a label never carries an id
    (bounded cardinality); a path no route matches is `other`."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self._templates: list[tuple[Any, str]] | None = None

    def _route(self, app: Any, path: str) -> str:
        if self._templates is None:
            self._templates = route_templates(app)
        return next((t for regex, t in self._templates if regex.match(path)), "other")

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        recorder = StatusRecorder(send)
        try:
            await self.app(scope, receive, recorder)
        finally:
            app = scope.get("app")
            telemetry = getattr(app.state, "telemetry", None) if app is not None else None
            if telemetry is not None:
                telemetry.requests.labels(
                    scope["method"], self._route(app, scope["path"]), str(recorder.status)
                ).observe(time.perf_counter() - start)

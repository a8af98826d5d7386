"""The one task: run an experiment by id. A thin wrapper around `execute`, which is plain Python
(opened store in, final status out) so tests call it without Celery.

Idempotent: `start_attempt` bumps the attempt and drops the points of earlier attempts, so a
re-delivered or re-queued job re-runs from scratch and never duplicates points. Only transient
database errors are retried; a bad spec or a crash in the science fails the job at once with a
readable error stored on the row.
"""

from __future__ import annotations

import logging
import os
import threading
import traceback

import sqlalchemy.exc
from celery import signals
from celery.exceptions import Reject

from service.config import Settings, get_settings
from service.logging import configure_logging, experiment_id_var
from service.store.base import StaleAttempt, Store, StoreError
from worker.app import TASK_NAME, celery_app
from worker.observer import StoreObserver

log = logging.getLogger(__name__)

# Set when this worker process is asked to shut down: the running job stops at its next step
# and goes back to the queue (instead of waiting for the reaper after a restart).
SHUTTING_DOWN = threading.Event()

TRANSIENT_DB_ERRORS = (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError,
                       sqlalchemy.exc.TimeoutError)


_STORES: dict[str, Store] = {}
_STORES_LOCK = threading.Lock()


def store_for(url: str) -> Store:
    """One store (engine + pool) per process and URL, opened on first use."""
    with _STORES_LOCK:
        if url not in _STORES:
            from service.store import open_store

            _STORES[url] = open_store(url)
        return _STORES[url]


def _forget_inherited_stores() -> None:
    """In a forked pool child: drop the parent's pools without closing its connections (closing
    would talk on sockets the parent still uses); the child opens its own on first use."""
    global _STORES_LOCK
    _STORES_LOCK = threading.Lock()  # another parent thread may have held it at fork time
    for store in _STORES.values():
        engine = getattr(store, "engine", None)
        if engine is not None:
            engine.dispose(close=False)
    _STORES.clear()


os.register_at_fork(after_in_child=_forget_inherited_stores)


def readable_error(exc: BaseException) -> str:
    """`Type: message` and the innermost frames, short enough for a status page."""
    frames = traceback.format_exception(type(exc), exc, exc.__traceback__)
    tail = "".join(frames[-4:]).strip()
    return f"{type(exc).__name__}: {exc}\n\n{tail}"[:4000]


def execute(
    experiment_id: str, store: Store, settings: Settings, *, worker_name: str,
    shutdown: threading.Event | None = None, fair: bool = False,
) -> str:
    """Run one attempt of the experiment; return the status it ended in ('skipped' when the job
    was not runnable: already finished, canceled, taken by another worker, or unknown).

    fair=True (the Celery task): the message is a ticket, not an order — run the job that is
    next in fair order in the same queue (store.claim_next: one user's flood cannot starve
    another's single job); each message still runs exactly one queued job."""
    from pydantic import ValidationError

    from advcore.observe import Canceled
    from advcore.run import run_experiment
    from advcore.spec import parse_spec

    try:
        # conditional on status `queued`: a duplicate message (re-sent by a reaper) for a job
        # that is running or done, a canceled or a deleted job all come back None
        experiment = (store.claim_next(experiment_id, worker_name) if fair
                      else store.start_attempt(experiment_id, worker_name))
    except StoreError as exc:
        log.info("experiment %s not runnable: %s", experiment_id, exc)
        return "skipped"
    if experiment is None:
        log.info("experiment %s is not queued; message ignored", experiment_id)
        return "skipped"
    message_id, experiment_id = experiment_id, experiment.id
    experiment_id_var.set(experiment_id)  # every log line of this job carries its id
    if experiment_id != message_id:
        log.info("message for %s claimed %s (fair order)", message_id, experiment_id)
    attempt = experiment.attempts
    try:
        spec = parse_spec(experiment.spec)
    except ValidationError as exc:
        store.finish(experiment_id, attempt, "failed", error=f"invalid spec: {exc}")
        return "failed"

    observer = StoreObserver(store, experiment_id, attempt, batch=settings.metric_batch,
                             heartbeat_s=settings.heartbeat_s, shutdown=shutdown)
    device = None if settings.device == "auto" else settings.device
    observer.start_keepalive()
    try:
        try:
            summary = run_experiment(spec, observer, device=device)
        finally:
            observer.stop_keepalive()
        observer.flush()
    except Canceled:
        if observer.stale:
            return "stale"
        observer.flush()
        if observer.cancel_requested:
            store.finish(experiment_id, attempt, "canceled", error="canceled on request")
            return "canceled"
        # worker shutdown: hand the job back now rather than after stale_after_s
        return _hand_back(store, settings, experiment_id, attempt)
    except TRANSIENT_DB_ERRORS:
        try:  # back to queued so the retry (autoretry_for) can start a fresh attempt
            store.requeue(experiment_id, attempt, max_attempts=settings.max_attempts)
        except Exception:  # database still away: the reaper requeues it once it is back
            log.exception("could not requeue %s after a transient error", experiment_id)
        raise
    except StaleAttempt:
        return "stale"
    except Exception as exc:  # the science failed: store why, do not retry
        log.exception("experiment %s failed", experiment_id)
        if observer.stale:
            return "stale"
        try:
            store.finish(experiment_id, attempt, "failed", error=readable_error(exc))
        except StaleAttempt:
            return "stale"
        return "failed"
    if observer.stale:
        return "stale"
    try:
        store.finish(experiment_id, attempt, "succeeded", summary=summary.to_stored())
    except StaleAttempt:
        return "stale"
    return "succeeded"


def _hand_back(store: Store, settings: Settings, experiment_id: str, attempt: int) -> str:
    from worker.enqueue import enqueue_experiment

    try:  # a graceful hand-back is not a lost attempt: it never exhausts max_attempts
        requeued = store.requeue(experiment_id, attempt, max_attempts=attempt + 1)
    except StoreError:
        return "stale"
    if requeued.status == "queued":
        try:
            enqueue_experiment(experiment_id, settings, queue=requeued.queue)
        except Exception:  # the reaper re-sends queued rows nobody picked up
            log.exception("could not re-enqueue %s on shutdown", experiment_id)
    return requeued.status


@celery_app.task(
    name=TASK_NAME, bind=True, acks_late=True, reject_on_worker_lost=True,
    autoretry_for=TRANSIENT_DB_ERRORS, retry_backoff=2, retry_backoff_max=60, max_retries=5,
)
def run_experiment_task(self, experiment_id: str) -> str:
    if SHUTTING_DOWN.is_set():  # a message taken during warm shutdown goes back untouched
        raise Reject("worker is shutting down", requeue=True)
    settings = get_settings()
    store = store_for(settings.resolved_database_url)
    token = experiment_id_var.set(experiment_id)
    try:
        status = execute(experiment_id, store, settings,
                         worker_name=self.request.hostname or "worker", shutdown=SHUTTING_DOWN,
                         fair=True)
        log.info("message %s: %s", experiment_id, status)
    finally:
        experiment_id_var.reset(token)
    return status


@signals.worker_shutting_down.connect
def _on_shutting_down(**_kwargs) -> None:
    SHUTTING_DOWN.set()


@signals.worker_process_init.connect
@signals.worker_init.connect
def _configure_logging(**_kwargs) -> None:
    configure_logging(get_settings().log_format)  # JSON lines with the experiment id


@signals.worker_ready.connect
def _start_reaper(sender=None, **_kwargs) -> None:
    """Every worker runs a reaper loop thread (safe with several: requeue is conditional)."""
    from worker.reaper import start_reaper

    start_reaper(get_settings(), name=f"reaper-{getattr(sender, 'hostname', 'worker')}")

"""The one task: run an experiment by id. A thin wrapper around `execute`, plain Python (opened
store in, Outcome out) so tests call it without Celery, in three steps:

- claim: `queued` → `running` with the attempt bumped (conditional, so a duplicate message, a
  canceled or a deleted job find nothing to run);
- run: one attempt in a child process the worker can kill (worker.isolation), bounded by the
  job's budget (worker.budget): cancel, delete, deadline and memory cap stop it within seconds;
- settle: the attempt's end written to the row, conditional on the attempt.

Idempotent: `start_attempt` drops the points of earlier attempts, so a re-delivered or re-queued
job re-runs from scratch and never duplicates points. Only transient database errors are
retried; a bad spec, a crash in the science, a time limit or running out of memory fail the job
at once (attempts = 1) with a readable error stored on the row. Only a lost worker (no
heartbeat: the machine or the worker process died, not the job) is re-run by the reaper.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass

from celery import signals
from celery.exceptions import Reject

from advcore.spec import ExperimentSpec
from lab.config import Settings, get_settings
from lab.logging import configure_logging, experiment_id_var
from lab.store.base import Experiment, StaleAttempt, Store, StoreError
from worker.app import TASK_NAME, celery_app
from worker.budget import budget_for
from worker.errors import readable_error
from worker.isolation import TRANSIENT_DB_ERRORS, JobArgs, run_attempt
from worker.outcome import Outcome, RunResult
from worker.placement import torch_threads
from worker.stores import store_for

log = logging.getLogger(__name__)

__all__ = ["Outcome", "execute", "readable_error", "run_experiment_task", "store_for"]

# Set when this worker process is asked to shut down: the running job is stopped and goes back
# to the queue at once (instead of waiting for the reaper after a restart).
SHUTTING_DOWN = threading.Event()


class TransientJobError(Exception):
    """The job's process lost the database (a transient error); Celery retries the message."""


@dataclass(frozen=True)
class Claimed:
    """A job this worker now runs: its row (status running, attempt bumped) and parsed spec."""

    experiment: Experiment
    spec: ExperimentSpec | None  # None: the stored spec no longer validates (`invalid` says why)
    invalid: str | None = None


def claim(message_id: str, store: Store, worker_name: str, *, fair: bool) -> Claimed | None:
    """Take the job a message stands for (status `queued` → `running`, attempt + 1), or None
    when there is nothing to run. fair=True: the message is a ticket, not an order — take the
    job next in fair order in the same queue (store.claim_next: one user's flood cannot starve
    another's single job); each message still runs exactly one queued job."""
    from pydantic import ValidationError

    from advcore.spec import parse_spec

    try:
        # conditional on status `queued`: a duplicate message (re-sent by a reaper) for a job
        # that is running or done, a canceled or a deleted job all come back None
        experiment = (store.claim_next(message_id, worker_name) if fair
                      else store.start_attempt(message_id, worker_name))
    except StoreError as exc:
        log.info("experiment %s not runnable: %s", message_id, exc)
        return None
    if experiment is None:
        log.info("experiment %s is not queued; message ignored", message_id)
        return None
    experiment_id_var.set(experiment.id)  # every log line of this job carries its id
    if experiment.id != message_id:
        log.info("message for %s claimed %s (fair order)", message_id, experiment.id)
    try:
        return Claimed(experiment, parse_spec(experiment.spec).resolve())
    except ValidationError as exc:
        return Claimed(experiment, None, invalid=f"invalid spec: {exc}")


def run(claimed: Claimed, store: Store, settings: Settings,
        shutdown: threading.Event | None) -> RunResult:
    """One attempt in a child process, bounded by the job's budget (worker.budget)."""
    experiment = claimed.experiment
    job = JobArgs(experiment_id=experiment.id, attempt=experiment.attempts,
                  spec=claimed.spec.model_dump(mode="json"), settings=settings,
                  environ=dict(os.environ), threads=torch_threads(settings),
                  device=None if settings.device == "auto" else settings.device)
    budget = budget_for(claimed.spec, experiment.queue, settings)
    return run_attempt(job, store, settings, budget, shutdown or threading.Event())


def settle(experiment_id: str, attempt: int, result: RunResult, store: Store,
           settings: Settings) -> Outcome:
    """Write the end of the attempt to the store: conditional on the attempt still being this
    worker's, so a reaped or deleted job is left alone (STALE)."""
    if result.outcome in (Outcome.SKIPPED, Outcome.STALE):
        return result.outcome
    try:
        if result.transient:  # back to queued so the retry (autoretry_for) starts a new attempt
            store.requeue(experiment_id, attempt, max_attempts=settings.max_attempts)
            raise TransientJobError(result.error)
        if result.outcome is Outcome.REQUEUED:
            return _hand_back(store, settings, experiment_id, attempt)
        if result.outcome is Outcome.CANCELED:
            store.finish(experiment_id, attempt, "canceled", error="canceled on request")
        elif result.outcome is Outcome.SUCCEEDED:
            store.finish(experiment_id, attempt, "succeeded", summary=result.summary)
        else:
            log.warning("experiment %s failed: %s", experiment_id, (result.error or "")[:300])
            store.finish(experiment_id, attempt, "failed", error=result.error)
    except StaleAttempt:
        return Outcome.STALE
    return result.outcome


def execute(
    experiment_id: str, store: Store, settings: Settings, *, worker_name: str,
    shutdown: threading.Event | None = None, fair: bool = False,
) -> Outcome:
    """Claim → run → settle one attempt; return how it ended (an Outcome, equal to its
    status string)."""
    claimed = claim(experiment_id, store, worker_name, fair=fair)
    if claimed is None:
        return Outcome.SKIPPED
    experiment = claimed.experiment
    if claimed.spec is None:
        result = RunResult(Outcome.FAILED, error=claimed.invalid)
    else:
        result = run(claimed, store, settings, shutdown)
    return settle(experiment.id, experiment.attempts, result, store, settings)


def _hand_back(store: Store, settings: Settings, experiment_id: str, attempt: int) -> Outcome:
    from lab.queue import enqueue_experiment

    try:  # a graceful hand-back is not a lost attempt: it never exhausts max_attempts
        requeued = store.requeue(experiment_id, attempt, max_attempts=attempt + 1)
    except StoreError:
        return Outcome.STALE
    if requeued.status == "queued":
        try:
            enqueue_experiment(experiment_id, settings, queue=requeued.queue)
        except Exception:  # the reaper re-sends queued rows nobody picked up
            log.exception("could not re-enqueue %s on shutdown", experiment_id)
    return Outcome(requeued.status)


@celery_app.task(
    name=TASK_NAME, bind=True, acks_late=True, reject_on_worker_lost=True,
    autoretry_for=(*TRANSIENT_DB_ERRORS, TransientJobError), retry_backoff=2, retry_backoff_max=60, max_retries=5,
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
    warm_up(get_settings())


def warm_up(settings: Settings) -> None:
    """Pay the imports before the first job instead of inside it, where they would hold off
    its cancel: torch and the cost model here, the science in the forkserver."""
    from advcore.spec import parse_spec
    from worker.isolation import start_forkserver

    budget_for(parse_spec({}).resolve(), None, settings)
    start_forkserver()

"""The reaper: the database, not the broker, decides that a job was lost.

Server-less brokers (filesystem, SQL) have no visibility timeout and keep unacked messages in
worker memory, so a SIGKILLed worker's job is never redelivered. Two rules put it back:
1. a `running` job whose heartbeat is older than `stale_after_s` is re-queued (or failed after
   `max_attempts`) and re-sent. `store.requeue` is conditional on the attempt, so with several
   reapers exactly one wins and only the winner sends.
2. a `queued` job older than `lost_queued_after_s` that is still queued on two consecutive passes
   while the broker queue was empty both times had its message lost (broker wiped, enqueue
   failed after commit): it is re-sent. A duplicate (two reapers, or a race with a worker
   picking it up) is harmless: the task ignores a message for a job that is not queued.
Runs as a daemon thread in `advlab serve` and in every worker.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import Callable

from lab.clock import utcnow
from lab.config import Settings, get_settings
from lab.queue import enqueue_experiment, queue_depth as broker_depth
from lab.store.base import ExperimentFilter, Store, StoreError
from worker.stores import store_for

log = logging.getLogger(__name__)


@dataclass
class ReapReport:
    requeued: list[str] = field(default_factory=list)  # stale running → queued and re-sent
    failed: list[str] = field(default_factory=list)  # stale running past max_attempts
    resent: list[str] = field(default_factory=list)  # lost queued messages sent again


def _age_s(when: datetime | None, now: datetime) -> float:
    if when is None:
        return float("inf")
    return (now - when).total_seconds()


class Reaper:
    def __init__(
        self, store: Store, settings: Settings, *,
        enqueue: Callable[[str, Settings], None] | None = None,
        queue_depth: Callable[[Settings], int] | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.enqueue = enqueue or self._send_to_routed_queue
        self._send = enqueue_experiment
        self.queue_depth = queue_depth or broker_depth
        self._suspects: set[str] = set()  # queued ids seen lost on the previous pass

    def _send_to_routed_queue(self, experiment_id: str, settings: Settings) -> None:
        """Re-send to the queue the row was routed to (cpu/gpu by spec.device)."""
        try:
            queue = self.store.get_experiment(experiment_id).queue
        except StoreError:
            return  # deleted meanwhile: nothing to send
        self._send(experiment_id, settings, queue=queue)

    def reap_once(self) -> ReapReport:
        report = ReapReport()
        self._requeue_stale(report)
        self._resend_lost(report)
        if report.requeued or report.failed or report.resent:
            log.warning("reaper: requeued %s, failed %s, re-sent %s",
                        report.requeued, report.failed, report.resent)
        return report

    def _requeue_stale(self, report: ReapReport) -> None:
        for experiment in self.store.stale_running(self.settings.stale_after_s):
            try:
                after = self.store.requeue(experiment.id, experiment.attempts,
                                           max_attempts=self.settings.max_attempts)
            except StoreError:  # another reaper won, or the worker finished meanwhile
                continue
            if after.status == "queued":
                self.enqueue(experiment.id, self.settings)
                report.requeued.append(experiment.id)
            else:
                report.failed.append(experiment.id)

    def _resend_lost(self, report: ReapReport) -> None:
        now = utcnow()
        page = self.store.list_experiments(ExperimentFilter(status=["queued"]), limit=500,
                                           order="created_asc")
        old = {e.id for e in page.items
               if _age_s(e.created_at, now) >= self.settings.lost_queued_after_s}
        # the broker depth checked is the default queue's: old rows routed elsewhere (the gpu
        # queue) are re-sent only by a reaper whose default queue it is
        default = {None, self.settings.queue}
        old = {e.id for e in page.items if e.id in old and e.queue in default}
        if not old or self.queue_depth(self.settings) > 0:
            self._suspects.clear()  # nothing old, or the broker still holds work for them
            return
        lost, self._suspects = old & self._suspects, old - self._suspects
        for experiment_id in sorted(lost):
            self.enqueue(experiment_id, self.settings)
            report.resent.append(experiment_id)


class ReaperThread(threading.Thread):
    """`Reaper.reap_once` every `reap_every_s` until `stop()`; errors are logged, not fatal."""

    def __init__(self, reaper: Reaper, every_s: float, name: str = "advlab-reaper") -> None:
        super().__init__(name=name, daemon=True)
        self.reaper = reaper
        self.every_s = every_s
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(self.every_s):
            try:
                self.reaper.reap_once()
            except Exception:  # a database or broker hiccup: try again next pass
                log.exception("reaper pass failed")

    def stop(self, timeout: float | None = 5.0) -> None:
        self._stop_event.set()
        if self.is_alive() and threading.current_thread() is not self:
            self.join(timeout)


def start_reaper(settings: Settings | None = None, *, name: str = "advlab-reaper") -> ReaperThread:
    settings = settings or get_settings()
    thread = ReaperThread(Reaper(store_for(settings.resolved_database_url), settings),
                          settings.reap_every_s, name=name)
    thread.start()
    return thread

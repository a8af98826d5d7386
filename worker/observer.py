"""StoreObserver: the worker's end of advcore's observer seam.

Records are buffered and written in bulk (one insert per `batch` points, not per point); the
buffer is flushed at every evaluation (an epoch that produced records) so a client polling the
API sees each evaluation as soon as it is complete. The heartbeat (progress + liveness) goes out
at most every `heartbeat_s`, and at every evaluation; its answer carries the cancel flag, which
`should_stop()` reports. If the store says this attempt is stale (the job was reaped and handed
to another worker), the observer stops writing and asks training to stop, quietly.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable, Sequence

from advcore.observe import MatrixRecord, MetricRecord
from lab.store.base import CorrelationMatrix, MetricPoint, StaleAttempt, Store

log = logging.getLogger(__name__)


class StoreObserver:
    def __init__(
        self, store: Store, experiment_id: str, attempt: int, *,
        batch: int = 500, heartbeat_s: float = 5.0,
        shutdown: threading.Event | None = None, clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.experiment_id = experiment_id
        self.attempt = attempt
        self.batch = max(1, batch)
        self.heartbeat_s = heartbeat_s
        self.shutdown = shutdown or threading.Event()  # set when the worker is asked to stop
        self.clock = clock
        self.points: list[MetricPoint] = []
        self.matrices: list[CorrelationMatrix] = []
        self.step = 0
        self.total = 0
        self.cancel_requested = False
        self.stale = False
        self._last_beat = float("-inf")
        self.points_written = 0
        self._beat_lock = threading.Lock()
        self._keepalive: threading.Thread | None = None
        self._keepalive_stop = threading.Event()

    # ------------------------------------------------------------------ observer interface

    def on_start(self, total_steps: int, seeds: Sequence[int]) -> None:
        self.total = total_steps
        self._beat()

    def on_metrics(self, records: Sequence[MetricRecord]) -> None:
        if self.stale:
            return
        self.points.extend(MetricPoint(name=r.name, step=int(r.step), value=float(r.value),
                                       seed=int(r.seed)) for r in records)
        if len(self.points) >= self.batch:
            self._flush_points(full_batches_only=True)

    def on_matrices(self, records: Sequence[MatrixRecord]) -> None:
        if self.stale:
            return
        self.matrices.extend(
            CorrelationMatrix(name=r.name, step=int(r.step), seed=int(r.seed), values=r.values,
                              row_labels=list(r.row_labels), col_labels=list(r.col_labels))
            for r in records)

    def on_progress(self, step: int, total: int) -> None:
        self.step, self.total = step, total
        evaluated = bool(self.points or self.matrices)
        if evaluated:
            self.flush()
        if evaluated or self.clock() - self._last_beat >= self.heartbeat_s:
            self._beat()

    def should_stop(self) -> bool:
        if not (self.stale or self.cancel_requested or self.shutdown.is_set()):
            if self.clock() - self._last_beat >= self.heartbeat_s:
                self._beat()  # an epoch longer than heartbeat_s still sees a cancel in time
        return self.stale or self.cancel_requested or self.shutdown.is_set()

    # ------------------------------------------------------------------ writing

    def flush(self) -> None:
        """Write everything buffered (metrics first, then matrices)."""
        self._flush_points()
        if self.matrices and not self.stale:
            matrices, self.matrices = self.matrices, []
            self._guard(self.store.add_matrices, self.experiment_id, self.attempt, matrices)

    def _flush_points(self, full_batches_only: bool = False) -> None:
        least = self.batch if full_batches_only else 1
        while len(self.points) >= least and not self.stale:
            chunk, self.points = self.points[: self.batch], self.points[self.batch:]
            if self._guard(self.store.add_metrics, self.experiment_id, self.attempt, chunk):
                self.points_written += len(chunk)

    def _beat(self) -> None:
        with self._beat_lock:
            if self.stale:
                return
            self._last_beat = self.clock()
            result = self._guard(self.store.heartbeat, self.experiment_id, self.attempt, self.step)
            if result is True:
                self.cancel_requested = True

    # ------------------------------------------------------------------ keep-alive

    def start_keepalive(self) -> None:
        """Heartbeat from a thread too, so one epoch (or evaluation) longer than stale_after_s
        does not get a live job reaped; a killed process takes the thread with it."""
        period = max(self.heartbeat_s, 0.05)

        def loop() -> None:
            while not self._keepalive_stop.wait(period):
                if self.clock() - self._last_beat >= period:
                    try:
                        self._beat()
                    except Exception:  # a database hiccup: the next beat or the reaper decides
                        log.exception("keep-alive heartbeat failed")

        self._keepalive = threading.Thread(target=loop, name="advlab-keepalive", daemon=True)
        self._keepalive.start()

    def stop_keepalive(self) -> None:
        self._keepalive_stop.set()
        if self._keepalive is not None:
            self._keepalive.join(timeout=30)

    def _guard(self, write, *args):
        """Run a store write; a StaleAttempt switches the observer off instead of raising."""
        try:
            result = write(*args)
            return True if result is None else result
        except StaleAttempt:
            log.warning("experiment %s attempt %s is stale; stopping quietly",
                        self.experiment_id, self.attempt)
            self.stale = True
            self.points.clear()
            self.matrices.clear()
            return False

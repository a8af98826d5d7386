"""StoreObserver: the job process's end of advcore's observer seam.

Records are buffered and written in bulk (one insert per `batch` points, not per point); the
buffer is flushed at every evaluation (an epoch that produced records) so a client polling the
API sees each evaluation as soon as it is complete. Progress goes to `progress(step, total)`:
the worker process that supervises the job (worker.isolation) heartbeats with it and reads the
cancel flag. Every write is fenced by the attempt: if the store says this attempt is stale (the
job was reaped, canceled and reaped, or deleted), the observer stops writing and asks training
to stop, quietly.
"""

from __future__ import annotations

import logging
from typing import Callable, Sequence

from advcore.observe import MatrixRecord, MetricRecord
from lab.store.base import CorrelationMatrix, MetricPoint, StaleAttempt, Store

log = logging.getLogger(__name__)


class StoreObserver:
    def __init__(
        self, store: Store, experiment_id: str, attempt: int, *, batch: int = 500,
        progress: Callable[[int, int], None] | None = None,
    ) -> None:
        self.store = store
        self.experiment_id = experiment_id
        self.attempt = attempt
        self.batch = max(1, batch)
        self.progress = progress or (lambda step, total: None)
        self.points: list[MetricPoint] = []
        self.matrices: list[CorrelationMatrix] = []
        self.stale = False
        self.points_written = 0

    # ------------------------------------------------------------------ observer interface

    def on_start(self, total_steps: int, seeds: Sequence[int]) -> None:
        self.progress(0, total_steps)

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
        if self.points or self.matrices:  # an evaluation epoch: make it visible now
            self.flush()
        self.progress(step, total)

    def should_stop(self) -> bool:
        return self.stale

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

    def _guard(self, write, *args) -> bool:
        """Run a store write; a StaleAttempt switches the observer off instead of raising."""
        try:
            write(*args)
            return True
        except StaleAttempt:
            log.warning("experiment %s attempt %s is stale; stopping quietly",
                        self.experiment_id, self.attempt)
            self.stale = True
            self.points.clear()
            self.matrices.clear()
            return False

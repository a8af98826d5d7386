"""How results leave advcore: a small observer interface, not globals or prints.

Training calls the observer at each evaluation; the local runner writes files, the worker writes
the store, a notebook may just collect. `should_stop()` is polled once per epoch (cancellation).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, Sequence


@dataclass(frozen=True)
class MetricRecord:
    name: str  # e.g. "test/robust_accuracy/pgd_l2@4", "corr/cluster/3"
    step: int  # epoch (GD step for full batch)
    value: float
    seed: int  # which seed of a batched run produced it


@dataclass(frozen=True)
class MatrixRecord:
    name: str  # e.g. "cosine/cluster", "cosine/robust", "cosine/non_robust"
    step: int
    seed: int
    values: list[list[float]]  # rows: neurons, columns: features
    row_labels: list[str] = field(default_factory=list)  # e.g. ["+0", "+1", ..., "-0"]
    col_labels: list[str] = field(default_factory=list)  # e.g. ["mu_0", ..., "mu_9"]


class Observer(Protocol):
    def on_start(self, total_steps: int, seeds: Sequence[int]) -> None: ...

    def on_metrics(self, records: Sequence[MetricRecord]) -> None: ...

    def on_matrices(self, records: Sequence[MatrixRecord]) -> None: ...

    def on_progress(self, step: int, total: int) -> None: ...

    def should_stop(self) -> bool: ...


class NullObserver:
    """Ignores everything; never stops."""

    def on_start(self, total_steps: int, seeds: Sequence[int]) -> None:
        pass

    def on_metrics(self, records: Sequence[MetricRecord]) -> None:
        pass

    def on_matrices(self, records: Sequence[MatrixRecord]) -> None:
        pass

    def on_progress(self, step: int, total: int) -> None:
        pass

    def should_stop(self) -> bool:
        return False


class CollectingObserver(NullObserver):
    """Keeps every record in memory (tests, notebooks)."""

    def __init__(self) -> None:
        self.metrics: list[MetricRecord] = []
        self.matrices: list[MatrixRecord] = []
        self.progress: list[tuple[int, int]] = []

    def on_metrics(self, records: Sequence[MetricRecord]) -> None:
        self.metrics.extend(records)

    def on_matrices(self, records: Sequence[MatrixRecord]) -> None:
        self.matrices.extend(records)

    def on_progress(self, step: int, total: int) -> None:
        self.progress.append((step, total))

    def series(self, name: str, seed: int | None = None) -> list[tuple[int, float]]:
        return [(r.step, r.value) for r in self.metrics
                if r.name == name and (seed is None or r.seed == seed)]

    def matrix(self, name: str, seed: int | None = None, step: int | None = None
               ) -> list[list[float]]:
        """Matrix `name` (e.g. cosine/cluster) of `seed` at `step`, by default the last one."""
        found = [r for r in self.matrices if r.name == name and (seed is None or r.seed == seed)
                 and (step is None or r.step == step)]
        if not found:
            raise KeyError(f"no matrix {name!r} for seed {seed} at step {step}")
        return max(found, key=lambda r: r.step).values


class Canceled(Exception):
    """Raised by training when the observer asked it to stop."""

"""What one job may use: a deadline and a memory cap, derived from its cost estimate.

deadline = clamp(time_safety x estimated FLOPs / the queue's GFLOP/s, time_floor_s, max_job_s)
memory   = clamp(memory_safety x estimated peak bytes, memory_floor_bytes, max_job_memory_bytes)

The memory cap bounds what the job's process grows by after it started (its resident set
beyond the interpreter and torch it was forked with). The texts say both the estimate and the
limit, so a user can tell a bad estimate from a job that really was too large.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

from lab.config import Settings

log = logging.getLogger(__name__)

GB = 1e9


def host_memory_bytes() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 16 << 30


def _bytes(n: float) -> str:
    if n >= 1 << 30:
        return f"{n / (1 << 30):.2f} GiB"
    return f"{n / (1 << 20):.0f} MiB"


def _seconds(s: float) -> str:
    return f"{s:.0f} s" if s >= 10 else f"{s:.1f} s"


@dataclass(frozen=True)
class Budget:
    deadline_s: float
    memory_bytes: int
    estimated_flops: float | None  # None: the spec could not be priced
    estimated_peak_bytes: float | None
    gflops: float  # the queue's assumed throughput

    @property
    def estimated_s(self) -> float | None:
        if self.estimated_flops is None:
            return None
        return self.estimated_flops / (self.gflops * GB)

    def time_limit_error(self, ran_s: float) -> str:
        if self.estimated_s is None:
            estimate = "unknown"
        else:
            estimate = (f"{_seconds(self.estimated_s)} ({self.estimated_flops / GB:.3g} GFLOP at "
                        f"{self.gflops:g} GFLOP/s)")
        return (f"time limit: estimated {estimate}, ran {_seconds(ran_s)} "
                f"(limit {_seconds(self.deadline_s)})")

    def out_of_memory_error(self, used_bytes: float | None = None, how: str = "") -> str:
        estimate = "unknown" if self.estimated_peak_bytes is None else _bytes(self.estimated_peak_bytes)
        used = f", used {_bytes(used_bytes)}" if used_bytes else ""
        return f"out of memory: estimated {estimate}, limit {_bytes(self.memory_bytes)}{used}{how}"


def budget_for(spec, queue: str | None, settings: Settings) -> Budget:
    """The budget of a job with resolved `spec` routed to `queue`."""
    gflops = settings.gpu_gflops if queue == settings.gpu_queue else settings.cpu_gflops
    ceiling_bytes = settings.max_job_memory_bytes or int(0.8 * host_memory_bytes())
    try:
        from advcore.cost import estimate

        cost = estimate(spec)
        flops, peak = float(cost.flops), float(cost.peak_bytes)
    except Exception:  # a kind without a cost function: the server-wide bounds alone
        log.exception("no cost estimate; the job gets the server-wide bounds")
        return Budget(settings.max_job_s, ceiling_bytes, None, None, gflops)
    deadline = settings.time_safety * flops / (gflops * GB)
    deadline = min(settings.max_job_s, max(settings.time_floor_s, deadline))
    memory = min(ceiling_bytes, max(settings.memory_floor_bytes, int(settings.memory_safety * peak)))
    return Budget(deadline, memory, flops, peak, gflops)

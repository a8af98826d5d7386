"""Where a job computes: its share of the host's cores and, with several GPUs, its device.

Torch's default pool is one thread per core in every process; two workers on a 2-core host
then run four spinning threads and each job gets slower than alone. A job takes
cores / (worker processes on the host x jobs per process) threads instead, unless
ADVLAB_TORCH_THREADS says otherwise. `advlab serve --workers N` tells its workers N
(ADVLAB_WORKERS_PER_HOST) and, with several GPUs, pins worker i to one of them.
"""

from __future__ import annotations

import os
from pathlib import Path

from lab.config import Settings


def host_cores() -> int:
    """CPUs this process may run on (the affinity mask, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def torch_threads(settings: Settings, cores: int | None = None) -> int:
    """Intra-op threads for one job of a worker configured by `settings`."""
    if settings.torch_threads:
        return max(1, settings.torch_threads)
    cores = cores or host_cores()
    jobs = max(1, settings.workers_per_host) * max(1, settings.worker_concurrency)
    return max(1, cores // jobs)


def apply_threads(threads: int) -> int:
    """Set torch's intra-op pool (call before any torch work); returns what torch reports."""
    import torch

    torch.set_num_threads(threads)
    return torch.get_num_threads()


def visible_gpus(environ: dict[str, str] | None = None) -> list[str]:
    """GPU ids this process may use: CUDA_VISIBLE_DEVICES if set, else the NVIDIA driver's list
    (read from /proc, so the supervisor need not import torch)."""
    env = os.environ if environ is None else environ
    if "CUDA_VISIBLE_DEVICES" in env:
        return [g.strip() for g in env["CUDA_VISIBLE_DEVICES"].split(",") if g.strip()]
    driver = Path("/proc/driver/nvidia/gpus")
    return [str(i) for i in range(len(list(driver.iterdir())))] if driver.is_dir() else []


def worker_env(index: int, workers: int, base: dict[str, str]) -> dict[str, str]:
    """The environment of worker `index` of `workers` on this host: the host's worker count (at
    least `workers`; more if ADVLAB_WORKERS_PER_HOST says other workers share the host) and,
    with two or more GPUs, one GPU per worker (round robin)."""
    env = dict(base)
    configured = int(env.get("ADVLAB_WORKERS_PER_HOST") or 1)
    env["ADVLAB_WORKERS_PER_HOST"] = str(max(1, workers, configured))
    gpus = visible_gpus(env)
    if len(gpus) > 1:
        env["CUDA_VISIBLE_DEVICES"] = gpus[index % len(gpus)]
    return env

"""All settings, from the environment (prefix ADVLAB_); nothing else reads os.environ."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ADVLAB_", extra="ignore")

    home: Path = Field(default_factory=lambda: Path.home() / ".advlab")  # embedded data dir
    database_url: str | None = None  # default: sqlite:///{home}/advlab.db
    broker_url: str | None = None  # default: filesystem transport under {home}/broker
    device: str = "auto"  # auto | cpu | cuda
    host: str = "127.0.0.1"
    port: int = 8000

    # limits (413 names the one exceeded)
    max_body_bytes: int = 256 * 1024
    max_d: int = 20_000
    max_width: int = 10_000
    max_samples: int = 200_000  # n_train + n_test
    max_epochs: int = 100_000
    max_radii: int = 64
    max_seeds: int = 64
    max_sweep_members: int = 256  # experiments one sweep may create (service.sweeps)

    # admission from the estimate (advcore.cost, service.admission): one job's estimated peak
    # memory, compute and stored bytes. Defaults fit a 24 GB, 2-core box measured at 1-3
    # GFLOP/s per worker: 8 GB leaves room for a second job, the API and the database; 50 000
    # GFLOP is 5-14 hours of one core. A queue's own value (cpu_*, gpu_*) replaces the
    # server-wide one for the jobs of that queue; unset, the server-wide one applies.
    max_peak_gb: float = Field(8.0, gt=0)
    max_gflop: float = Field(50_000.0, gt=0)
    max_stored_gb: float = Field(1.0, gt=0)
    cpu_max_peak_gb: float | None = Field(None, gt=0)
    cpu_max_gflop: float | None = Field(None, gt=0)
    cpu_max_stored_gb: float | None = Field(None, gt=0)
    gpu_max_peak_gb: float | None = Field(None, gt=0)  # device memory of the GPU workers
    gpu_max_gflop: float | None = Field(None, gt=0)
    gpu_max_stored_gb: float | None = Field(None, gt=0)
    # a sweep is admitted as a whole: its members' summed compute and stored bytes
    max_sweep_gflop: float = Field(200_000.0, gt=0)
    max_sweep_stored_gb: float = Field(4.0, gt=0)

    # SQLite: the WAL file is truncated to this after a checkpoint, and the API checkpoints
    # every `sqlite_checkpoint_s` (TRUNCATE: waits out readers on the busy timeout), so constant
    # reads cannot keep the WAL growing (auto-checkpoints alone never get past a live reader)
    sqlite_journal_size_limit_mb: int = Field(16, ge=0)
    sqlite_checkpoint_s: float = Field(30.0, gt=0)

    # job liveness
    heartbeat_s: float = 5.0  # worker heartbeat period while a job runs
    stale_after_s: float = 60.0  # a running job whose heartbeat is older is re-queued
    reap_every_s: float = 10.0
    max_attempts: int = 3
    metric_batch: int = 500  # metric points per bulk insert
    lost_queued_after_s: float = 120.0  # a queued row this old, broker queue empty twice: re-sent
    cancel_poll_s: float = 1.0  # a running job's cancel flag is read at least this often

    # run-time bounds of one job (worker.budget): deadline from the cost estimate, memory cap
    cpu_gflops: float = 5.0  # sustained GFLOP/s assumed for a job on the cpu queue
    gpu_gflops: float = 500.0  # ... and on the gpu queue
    time_safety: float = 10.0  # deadline = safety x estimated seconds ...
    time_floor_s: float = 300.0  # ... but never less than this
    max_job_s: float = 24 * 3600.0  # and never more than this, whatever the estimate
    memory_safety: float = 4.0  # memory cap = safety x estimated peak bytes ...
    memory_floor_bytes: int = 1 << 30  # ... but never less than this
    max_job_memory_bytes: int | None = None  # and never more (default: 80% of the host's RAM)

    # placement (worker.placement): torch threads = cores / (workers_per_host x concurrency)
    torch_threads: int | None = None  # explicit torch intra-op threads per job
    workers_per_host: int = 1  # worker processes sharing this host's cores (`serve --workers`)
    worker_concurrency: int = 1  # jobs one worker process runs at once (`worker --concurrency`)

    # broker
    queue: str = "advlab"  # Celery queue the API sends to and workers consume

    # lab server: auth, quotas, priorities, queues, hardening
    auth: Literal["none", "tokens"] = "none"  # tokens: `Authorization: Bearer` on every /v1 call
    max_active_per_user: int = 1000  # queued + running jobs per user (429 beyond)
    quota_retry_after_s: int = 30  # Retry-After of a quota 429
    max_priority: int = 5  # non-admin users may submit with |priority| <= this (admins: 1000)
    cpu_queue: str | None = None  # queue of device auto/cpu jobs; default: `queue`
    gpu_queue: str = "gpu"  # queue of device cuda jobs (`advlab worker --queues gpu`)
    cors_origins: str = ""  # comma-separated origins allowed by CORS; empty: CORS off
    auth_failures_per_minute: int = 20  # bad tokens per (client, token prefix) a minute; then 429
    limiter_url: str | None = None  # redis://... shares the bad-token limiter between API processes
    trusted_proxies: str = ""  # proxy addresses whose X-Forwarded-For is believed; "": none
    session_max_age_s: int = 12 * 3600  # lifetime of the dashboard's login cookie
    metrics_token: str | None = None  # with tokens on, /metrics needs `Bearer <this>` ...
    metrics_allow_ips: str = ""  # ... or a client address in this comma-separated list
    log_format: Literal["json", "text"] = "json"  # advlab.* loggers (request and job logs)

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home / 'advlab.db'}"

    @property
    def resolved_broker_url(self) -> str:
        return self.broker_url or "filesystem://"

    @property
    def resolved_cpu_queue(self) -> str:
        return self.cpu_queue or self.queue

    @property
    def metrics_allow_list(self) -> list[str]:
        return [a.strip() for a in self.metrics_allow_ips.split(",") if a.strip()]

    @property
    def cors_origin_list(self) -> list[str]:
        return [o.strip() for o in self.cors_origins.split(",") if o.strip()]

    @property
    def broker_dir(self) -> Path:
        return self.home / "broker"

    @property
    def is_embedded_broker(self) -> bool:
        return self.resolved_broker_url.startswith(("filesystem://", "sqla+"))


@lru_cache
def get_settings() -> Settings:
    return Settings()

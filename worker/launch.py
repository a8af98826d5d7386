"""Starting real Celery worker processes (`advlab worker`, `advlab serve`, the e2e tests).

One job per process by default (`-P solo`): a job is one batched torch computation that already
uses the cores it is given, and a SIGKILL takes down exactly one job. `concurrency > 1` uses the
prefork pool. Each worker gets a unique node name so several can share a host and a broker.
"""

from __future__ import annotations

import os
import socket
import sys
import uuid

from lab.config import Settings, get_settings


def ensure_home(settings: Settings) -> None:
    """ADVLAB_HOME and, for the embedded broker, its folders."""
    settings.home.mkdir(parents=True, exist_ok=True)
    from lab.broker import broker_options

    broker_options(settings)  # creates the filesystem broker's folders


def worker_command(
    *, concurrency: int = 1, queues: str | None = None, hostname: str | None = None,
    loglevel: str = "INFO", settings: Settings | None = None,
) -> list[str]:
    """The argv of one worker process (`python -m celery ... worker ...`)."""
    settings = settings or get_settings()
    hostname = hostname or f"advlab-{uuid.uuid4().hex[:8]}@{socket.gethostname()}"
    pool = "solo" if concurrency == 1 else "prefork"
    return [
        sys.executable, "-m", "celery", "-A", "worker.app:celery_app", "worker",
        "-P", pool, "-c", str(concurrency), "-Q", queues or settings.resolved_cpu_queue, "-n", hostname,
        "--loglevel", loglevel, "--without-mingle", "--without-gossip", "--without-heartbeat",
    ]


def settings_env(settings: Settings, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment that makes a child process see exactly `settings`."""
    env = dict(os.environ if base is None else base)
    for key, value in settings.model_dump(mode="json").items():
        if value is not None:
            env[f"ADVLAB_{key.upper()}"] = str(value)
    return env


def run_worker(concurrency: int = 1, queues: str | None = None) -> None:
    """Become a Celery worker (exec): signals reach Celery directly, so Ctrl-C is Celery's warm
    shutdown, which hands the running job back to the queue."""
    settings = get_settings()
    ensure_home(settings)
    from lab.store import open_store
    from lab.store.base import SchemaOutOfDate

    try:  # fail now, not at the first job
        open_store(settings.resolved_database_url).ping()
    except SchemaOutOfDate as exc:
        raise SystemExit(f"advlab worker: {exc}") from None
    argv = worker_command(concurrency=concurrency, queues=queues, settings=settings)
    # each job's torch threads: cores / (ADVLAB_WORKERS_PER_HOST x jobs in this process)
    os.environ["ADVLAB_WORKER_CONCURRENCY"] = str(max(1, concurrency))
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(argv[0], argv)

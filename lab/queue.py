"""How a job reaches the workers: by task name, so the API process never imports torch.

`JobQueue` is the interface the API is given (service.main.create_app takes one) and the reaper
uses; `CeleryQueue` is the implementation on the configured broker. Call `send` only AFTER the
experiment row is committed: a worker may start the task at once, and the task must find its
row. Losing a message is survivable (the reaper re-sends queued rows that no worker picked up),
so a broker error is raised to the caller, who logs it; the row stays queued.
"""

from __future__ import annotations

from typing import Protocol

from lab.broker import TASK_NAME, app_for, supports_monitoring
from lab.config import Settings, get_settings


class JobQueue(Protocol):
    """Where experiments are sent to be run."""

    def send(self, experiment_id: str, queue: str | None = None) -> None:
        """Send `experiment_id` to `queue` (the row's routed queue), else the default queue."""

    def depth(self, queue: str | None = None) -> int:
        """Messages waiting in `queue` (default: the default queue), not counting the ones
        workers hold."""

    def ping(self) -> None:
        """Raise unless the broker answers."""

    def workers(self) -> dict[str, list[str]] | None:
        """Live workers (node name -> the queues it consumes), or None where the broker carries
        no remote control."""


class CeleryQueue:
    """`JobQueue` on the Celery broker of `settings` (default: the process settings)."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings

    def send(self, experiment_id: str, queue: str | None = None) -> None:
        enqueue_experiment(experiment_id, self.settings, queue=queue)

    def depth(self, queue: str | None = None) -> int:
        return queue_depth(self.settings, queue)

    def ping(self) -> None:
        broker_ping(self.settings)

    def workers(self) -> dict[str, list[str]] | None:
        return live_workers(self.settings)


def enqueue_experiment(experiment_id: str, settings: Settings | None = None,
                       queue: str | None = None) -> None:
    """Send `advlab.run_experiment(experiment_id)` to `queue` (the row's routed queue), else to
    the configured default queue."""
    app = app_for(settings)
    queue = queue or (settings or get_settings()).queue
    app.send_task(TASK_NAME, args=[experiment_id], queue=queue, routing_key=queue)


def queue_depth(settings: Settings | None = None, queue: str | None = None) -> int:
    """Messages waiting in `queue`, default the default queue (not counting the ones workers
    hold); for the reaper and /metrics. Fails fast (one retry, 2 s): a scrape or a reaper pass
    must not hang on a broker that is down. Declaring is idempotent and works on every broker we use."""
    app = app_for(settings)
    queue = queue or (settings or get_settings()).queue
    with app.connection_for_read() as conn:
        conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0.2, timeout=2)
        declared = conn.default_channel.queue_declare(queue=queue, durable=True, auto_delete=False)
        return int(declared.message_count)


def broker_ping(settings: Settings | None = None) -> None:
    """Open (and close) a connection to the configured broker; raise if it cannot be reached."""
    with app_for(settings).connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0.2, timeout=2)


def live_workers(settings: Settings | None = None,
                 timeout: float = 1.0) -> dict[str, list[str]] | None:
    """The workers that answer a remote-control broadcast within `timeout` s (node name -> the
    queues it consumes); None where the broker carries no remote control (lab.broker)."""
    if not supports_monitoring(settings or get_settings()):
        return None
    replies = app_for(settings).control.inspect(timeout=timeout).active_queues() or {}
    return {node: sorted(q["name"] for q in queues or ()) for node, queues in replies.items()}

"""How the API hands a job to the workers: by task name, so the API process never imports torch.

Call only AFTER the experiment row is committed: a worker may start the task at once, and the
task must find its row. Losing a message is survivable (the reaper re-sends queued rows that no
worker picked up), so a broker error is raised to the caller, who logs it; the row stays queued.
"""

from __future__ import annotations

from lab.config import Settings, get_settings
from worker.app import TASK_NAME, app_for


def enqueue_experiment(experiment_id: str, settings: Settings | None = None,
                       queue: str | None = None) -> None:
    """Send `advlab.run_experiment(experiment_id)` to `queue` (the row's routed queue), else to
    the configured default queue."""
    app = app_for(settings)
    queue = queue or (settings or get_settings()).queue
    app.send_task(TASK_NAME, args=[experiment_id], queue=queue, routing_key=queue)


def queue_depth(settings: Settings | None = None) -> int:
    """Messages waiting in the queue (not counting the ones workers hold); for the reaper and
    /metrics. Declaring is idempotent and works on every broker we use."""
    app = app_for(settings)
    queue = (settings or get_settings()).queue
    with app.connection_for_read() as conn:
        declared = conn.default_channel.queue_declare(queue=queue, durable=True, auto_delete=False)
        return int(declared.message_count)

"""The broker connection, configured from Settings: the Celery app both sides use (the API and
the reaper send by task name through it; worker.app adds the task module for the workers).

Broker: Redis on a lab server, or the server-less filesystem transport under ADVLAB_HOME/broker
(embedded default). No result backend: the store is the source of truth for job state, results
and progress. Delivery is at-least-once (`acks_late`, `reject_on_worker_lost`, prefetch 1) and the
task is idempotent; server-less brokers keep unacked messages only in worker memory, so a killed
worker's job comes back through the store's heartbeat and the reaper (worker.reaper), not the broker.

Importing this module never imports torch or the task code: senders need only the task name.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from celery import Celery

from lab.config import Settings, get_settings

TASK_NAME = "advlab.run_experiment"

# Brokers with real fan-out and queues that go away with their consumer: Celery's remote control
# (`celery inspect`, Flower's worker pages) and its event stream work on these. kombu's
# filesystem transport has a fan-out table, but a killed worker's or a finished `celery inspect`'s
# queues are never deleted and messages have no TTL, so every broadcast would leave files behind
# for them; the SQL transport has no fan-out at all. On those two, remote control stays off.
MONITORING_SCHEMES = ("redis://", "rediss://", "amqp://", "amqps://", "pyamqp://")


def supports_monitoring(settings: Settings) -> bool:
    """Whether the configured broker carries Celery's remote control and events."""
    return settings.resolved_broker_url.startswith(MONITORING_SCHEMES)


def broker_folders(settings: Settings) -> dict[str, Path]:
    root = settings.broker_dir
    return {"queue": root / "queue", "processed": root / "processed", "control": root / "control"}


FS_POLLING_INTERVAL = 0.1  # seconds


def broker_options(settings: Settings) -> tuple[str | None, dict]:
    """(transport override, transport options) for the configured broker URL."""
    url = settings.resolved_broker_url
    if url.startswith("filesystem://"):
        folders = broker_folders(settings)
        for folder in folders.values():
            folder.mkdir(parents=True, exist_ok=True)
        return "lab.fs_transport:Transport", {
            "data_folder_in": str(folders["queue"]),
            "data_folder_out": str(folders["queue"]),
            "processed_folder": str(folders["processed"]),
            "control_folder": str(folders["control"]),
            "store_processed": True,
            # an idle worker lists the queue folder this often: what a job waits to start
            # (0.5 s added a quarter second to every first pickup; a listing costs microseconds)
            "polling_interval": FS_POLLING_INTERVAL,
        }
    if url.startswith("sqla+sqlite"):
        settings.home.mkdir(parents=True, exist_ok=True)
        return None, {"polling_interval": 0.5}
    # redis / amqp: the defaults; Redis's visibility timeout is a second safety net after the reaper
    return None, {"visibility_timeout": 6 * 3600}


def make_celery(settings: Settings | None = None, include: tuple[str, ...] = ()) -> Celery:
    """A Celery app on the configured broker; `include` names task modules (the workers'), which
    Celery imports only when a worker starts."""
    settings = settings or get_settings()
    transport, options = broker_options(settings)
    monitoring = supports_monitoring(settings)
    app = Celery("advlab", include=list(include))
    app.conf.update(
        broker_url=settings.resolved_broker_url,
        broker_transport=transport,
        broker_transport_options=options,
        broker_connection_retry_on_startup=True,
        result_backend=None,
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        task_default_queue=settings.queue,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        worker_hijack_root_logger=False,
        # `celery inspect`/`control` and Flower: on where the broker can carry them
        worker_enable_remote_control=monitoring,
        worker_send_task_events=monitoring,
        task_send_sent_event=monitoring,
        task_publish_retry_policy={"max_retries": 3, "interval_start": 0.1,
                                   "interval_step": 0.5, "interval_max": 1.0},
        broker_connection_timeout=5,
    )
    app.conf.advlab_settings = settings
    return app


@lru_cache(maxsize=8)
def _cached_app(settings_json: str) -> Celery:
    return make_celery(Settings.model_validate_json(settings_json))


def app_for(settings: Settings | None) -> Celery:
    """A sending app for `settings` (default: the process settings), one per distinct settings
    (tests make several)."""
    return _cached_app((settings or get_settings()).model_dump_json())

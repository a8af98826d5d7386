"""The workers' Celery app: the broker configuration of lab.broker plus the task module
(worker.tasks), which Celery imports when a worker starts. `-A worker.app:celery_app`.
Where the broker carries remote control, the worker answers it (and sends its heartbeat) from a
thread of its own, so a worker busy with a job still answers `celery inspect` (worker.monitor).
Tools that need no task code load `lab.celery_app` instead."""

from __future__ import annotations

from lab.broker import TASK_NAME, make_celery, supports_monitoring

__all__ = ["TASK_NAME", "celery_app"]

celery_app = make_celery(include=("worker.tasks",))
if supports_monitoring(celery_app.conf.advlab_settings):
    celery_app.conf.worker_consumer = "worker.monitor:Consumer"

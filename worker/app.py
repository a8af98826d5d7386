"""The workers' Celery app: the broker configuration of lab.broker plus the task module
(worker.tasks), which Celery imports when a worker starts. `-A worker.app:celery_app`."""

from __future__ import annotations

from lab.broker import TASK_NAME, make_celery

__all__ = ["TASK_NAME", "celery_app"]

celery_app = make_celery(include=("worker.tasks",))

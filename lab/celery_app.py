"""The Celery app for the ecosystem's tools, without the task code (no torch, no worker imports):

    celery -A lab.celery_app inspect ping        # which workers answer
    celery -A lab.celery_app inspect active      # what each is running
    celery -A lab.celery_app flower              # Flower (pip install flower)

It is lab.broker's app on the configured broker (ADVLAB_BROKER_URL), the one the API sends with;
the workers' app (worker.app) adds only the task module. Remote control and events work on the
brokers of `lab.broker.MONITORING_SCHEMES` (Redis, RabbitMQ), not on the embedded ones.
"""

from __future__ import annotations

from lab.broker import make_celery

app = make_celery()

__all__ = ["app"]

"""advlab workers: the Celery app (app), the one task (tasks), its store observer (observer), the
per-process store (stores), the reaper that re-queues lost jobs (reaper), and how worker processes
are started (launch). Sending a job is lab.queue's: workers never import the API (service)."""

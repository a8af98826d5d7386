"""advlab workers: the Celery app (app), the one task (tasks), its store observer (observer),
how the API enqueues (enqueue), the reaper that re-queues lost jobs (reaper), and how worker
processes are started (launch). Importing app or enqueue never imports torch."""

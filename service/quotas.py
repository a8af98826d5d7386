"""Sharing one server fairly: per-user quotas, bounded priorities, and queue routing.

- Quota: a user may have at most `max_active_per_user` queued + running jobs; a submit (or a
  sweep, counting all its members: admitted whole or refused whole) beyond that is a 429 with
  Retry-After. The store checks and inserts in one transaction under a per-user lock
  (lab.store.quota_lock), so concurrent submits never overshoot.
- Priority: an integer query parameter of the submit (`?priority=N`, default 0); it orders the
  user's OWN jobs in the fair claim (lab.store.users) and breaks ties between users, so it
  can never starve another user. Non-admins are bounded by |N| <= `max_priority` (422 beyond).
- Queues: the spec's `device` routes the job: `cuda` → `gpu_queue` ("gpu"), `auto`/`cpu` →
  `cpu_queue` (default: `queue`, so the embedded default and `advlab worker` keep working).
Spec size is bounded for everyone by the configured limits (service.limits).
"""

from __future__ import annotations

from service.auth import Principal, TooManyRequests
from lab.config import Settings
from service.errors import FieldError
from lab.store.base import QuotaExceeded

ADMIN_MAX_PRIORITY = 1000


def queue_for(device: str | None, settings: Settings) -> str:
    return settings.gpu_queue if device == "cuda" else settings.resolved_cpu_queue


def check_priority(user: Principal, priority: int, settings: Settings) -> int:
    bound = ADMIN_MAX_PRIORITY if user.is_admin else settings.max_priority
    if abs(priority) > bound:
        raise FieldError(["query", "priority"],
                         f"priority {priority} is outside [-{bound}, {bound}] for user "
                         f"{user.name} (configurable: ADVLAB_MAX_PRIORITY)", "limit.max_priority")
    return priority


def over_quota(user: Principal, settings: Settings, exc: QuotaExceeded) -> TooManyRequests:
    """The 429 for a submit the store refused (QuotaExceeded)."""
    return TooManyRequests(
        f"user {user.name} has {exc.active} queued or running experiments; adding {exc.adding} "
        f"would exceed max_active_per_user = {exc.limit} "
        "(configurable: ADVLAB_MAX_ACTIVE_PER_USER); retry when some have finished",
        settings.quota_retry_after_s)

"""The bad-token limiter: failures counted per (client address, token prefix) in a sliding
minute, so guessing is slowed while nobody with a valid token can be locked out (service.auth
checks the token first and consults the limiter only for a token that failed).

Two backends, one interface (`retry_after(key)`, `record(key)`):
- `FailureLimiter`, in memory: per API process. With several API processes (uvicorn
  `--workers`, several containers) each counts on its own, so set `ADVLAB_LIMITER_URL`.
- `RedisFailureLimiter` (`ADVLAB_LIMITER_URL=redis://...`): one sorted set of failure times per
  key, shared by every API process that points at the same Redis.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
import uuid
from collections import deque
from typing import Protocol

WINDOW_S = 60.0
PREFIX_CHARS = 13  # "advlab_" + 6 random characters: tells one user's stale token from another's


class Limiter(Protocol):
    def retry_after(self, key: str) -> int | None: ...

    def record(self, key: str) -> None: ...


def failure_key(client: str, token: str) -> str:
    """(client address, token prefix); the prefix is hashed so no part of a token is stored."""
    prefix = hashlib.sha256(token[:PREFIX_CHARS].encode()).hexdigest()[:16]
    return f"{client}|{prefix}"


class FailureLimiter:
    """Per-key sliding window of failure times, in this process's memory."""

    def __init__(self, per_minute: int, clock=time.monotonic) -> None:
        self.per_minute, self.clock = per_minute, clock
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _window(self, key: str, now: float) -> deque[float]:
        times = self._failures.setdefault(key, deque())
        while times and now - times[0] >= WINDOW_S:
            times.popleft()
        return times

    def retry_after(self, key: str) -> int | None:
        """Seconds until `key` may try again, or None when it is not blocked."""
        with self._lock:
            now = self.clock()
            times = self._window(key, now)
            if len(times) < self.per_minute:
                if not times:
                    self._failures.pop(key, None)
                return None
            return math.ceil(WINDOW_S - (now - times[0]))

    def record(self, key: str) -> None:
        with self._lock:
            now = self.clock()
            self._window(key, now).append(now)


class RedisFailureLimiter:
    """The same window as a Redis sorted set per key (score = failure time), shared by every
    API process; keys expire a minute after their last failure."""

    def __init__(self, url: str, per_minute: int, namespace: str = "advlab:authfail",
                 clock=time.time) -> None:
        import redis

        self.redis = redis.Redis.from_url(url, socket_timeout=2.0)
        self.per_minute, self.namespace, self.clock = per_minute, namespace, clock

    def _key(self, key: str) -> str:
        return f"{self.namespace}:{key}"

    def retry_after(self, key: str) -> int | None:
        now, name = self.clock(), self._key(key)
        pipe = self.redis.pipeline()
        pipe.zremrangebyscore(name, "-inf", now - WINDOW_S)
        pipe.zcard(name)
        pipe.zrange(name, 0, 0, withscores=True)
        _, count, oldest = pipe.execute()
        if count < self.per_minute or not oldest:
            return None
        return max(math.ceil(WINDOW_S - (now - oldest[0][1])), 1)

    def record(self, key: str) -> None:
        now, name = self.clock(), self._key(key)
        pipe = self.redis.pipeline()
        pipe.zadd(name, {uuid.uuid4().hex: now})
        pipe.expire(name, int(WINDOW_S) + 1)
        pipe.execute()


def make_limiter(per_minute: int, url: str | None) -> Limiter:
    return RedisFailureLimiter(url, per_minute) if url else FailureLimiter(per_minute)

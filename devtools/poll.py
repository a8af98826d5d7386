"""Polling until a deadline: the one loop the tests, the stack and the benchmarks wait with."""

from __future__ import annotations

import time
from typing import Callable, TypeVar

T = TypeVar("T")


def poll(probe: Callable[[], T], until: Callable[[T], bool] = bool, *, timeout: float,
         every: float = 0.2, ignore: type[BaseException] | tuple[type[BaseException], ...] = (),
         message: Callable[[T | None], str] | str = "") -> T:
    """Call `probe()` every `every` seconds until `until(value)` holds, and return that value.
    An exception of the `ignore` types counts as "not yet"; any other propagates (a probe may
    assert what must hold meanwhile). After `timeout` seconds: TimeoutError saying `message`
    (a text, or message(the last value, None if none came)), else the last value."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while True:
        try:
            last = probe()
            if until(last):
                return last
        except ignore:
            pass
        if time.monotonic() >= deadline:
            text = message(last) if callable(message) else message
            raise TimeoutError(f"not done after {timeout:g} s: {text or repr(last)}")
        time.sleep(every)

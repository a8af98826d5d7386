"""devtools.poll: the deadline loop the tests, the stack and the benchmarks share."""

from __future__ import annotations

import pytest

from devtools.poll import poll


def test_poll_returns_the_first_value_that_holds_and_ignores_the_listed_errors():
    calls = []

    def probe() -> int:
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionError("not up yet")
        return len(calls)

    assert poll(probe, lambda n: n >= 3, timeout=30, every=0, ignore=ConnectionError) == 3


def test_poll_raises_timeout_error_with_its_message_and_lets_other_errors_through():
    with pytest.raises(TimeoutError, match="still 0: nope"):
        poll(lambda: 0, timeout=0, every=0, message=lambda last: f"still {last}: nope")

    def exited() -> bool:
        raise RuntimeError("exited")

    with pytest.raises(RuntimeError, match="exited"):
        poll(exited, timeout=30, every=0, ignore=ConnectionError)

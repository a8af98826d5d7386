"""A job's error as the worker records it: `Type: message` and the innermost frames. The store
keeps only what users may see (lab.store.public_error: frames dropped, paths shortened); the
worker's log keeps the whole text with the experiment id."""

from __future__ import annotations

import traceback


def readable_error(exc: BaseException) -> str:
    """`Type: message` and the innermost frames, short enough for a status page."""
    frames = traceback.format_exception(type(exc), exc, exc.__traceback__)
    tail = "".join(frames[-4:]).strip()
    return f"{type(exc).__name__}: {exc}\n\n{tail}"[:4000]

"""What a stored job error may show: every user of a lab server reads every job's error, so it
carries the exception type and message, never server internals. Traceback frames are dropped
and absolute paths shortened to their last two parts (`…/cifar10/data_batch_1`); the full
traceback stays in the worker's log, tagged with the experiment id (worker.tasks logs it).
"""

from __future__ import annotations

import re

MAX_CHARS = 4000
_FRAME = re.compile(r'^\s*File "[^"]*", line \d+')
_TRACEBACK_HEAD = re.compile(r"^\s*(Traceback \(most recent call last\):|During handling of the "
                             r"above exception|The above exception was the direct cause)")
# an absolute POSIX path: a slash not preceded by a word, dot, colon, slash or tilde (so URLs
# such as https://errors.pydantic.dev/... and relative paths stay), then two or more parts
_ABSOLUTE_PATH = re.compile(r"(?<![\w.:/~\\…-])(?:/[\w.@+~-]+){2,}/?")


def _short_path(match: re.Match[str]) -> str:
    parts = [p for p in match.group(0).split("/") if p]
    return "…/" + "/".join(parts[-2:]) + ("/" if match.group(0).endswith("/") else "")


def _without_frames(paragraph: str) -> str:
    kept, in_frame = [], False
    for line in paragraph.splitlines():
        if _FRAME.match(line):
            in_frame = True  # the frame's source and caret lines follow, indented deeper
            continue
        if in_frame and line.startswith("    "):
            continue
        in_frame = False
        if not _TRACEBACK_HEAD.match(line):
            kept.append(line)
    return "\n".join(kept).strip()


def public_error(text: str | None) -> str | None:
    """The user-visible form of a job error (None stays None)."""
    if text is None:
        return None
    paragraphs: list[str] = []
    for paragraph in text.split("\n\n"):
        cleaned = _without_frames(paragraph)
        if cleaned and cleaned not in paragraphs:  # a traceback's tail repeats the message
            paragraphs.append(cleaned)
    return _ABSOLUTE_PATH.sub(_short_path, "\n\n".join(paragraphs))[:MAX_CHARS]

"""Errors as users see them: `Type: message` and where it happened, without server paths."""

from __future__ import annotations

import re
import traceback
from pathlib import Path

REPO = str(Path(__file__).resolve().parents[1]) + "/"
_ABSOLUTE = re.compile(r"(?<![\w.])/(?:[^\s/'\"(),:]+/)+([^\s/'\"(),:]*)")


def scrub_paths(text: str) -> str:
    """Absolute file paths → `…/name` (their last part): a data directory, a home, a
    virtualenv are the server's business, not the user's."""
    text = text.replace(REPO, "")
    return _ABSOLUTE.sub(lambda m: f"…/{m.group(1)}", text)


def _where(filename: str) -> str:
    if filename.startswith(REPO):
        return filename[len(REPO):]
    if "site-packages/" in filename:
        return filename.rsplit("site-packages/", 1)[1]
    return Path(filename).name


def readable_error(exc: BaseException, frames: int = 3) -> str:
    """`Type: message` and the innermost frames (file relative to the code, line, function),
    short enough for a status page."""
    stack = traceback.extract_tb(exc.__traceback__)[-frames:]
    where = "\n".join(f"  {_where(f.filename)}:{f.lineno} in {f.name}" for f in stack)
    return scrub_paths(f"{type(exc).__name__}: {exc}\n\n{where}".rstrip())[:4000]

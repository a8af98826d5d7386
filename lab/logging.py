"""Structured JSON logs with request and experiment ids, and no secrets in them.

One JSON object per line on stderr for the `advlab.*`, `lab.*`, `service.*` and `worker.*` loggers:
`{"ts", "level", "logger", "msg", "request_id", "experiment_id", ...extras}`. The ids come from
context variables that the request middleware (service.hardening) and the worker task set, so
every line logged while serving a request or running a job carries them without threading them
through calls. Every message passes a redaction filter: bearer tokens and advlab tokens are
replaced before any handler sees them, whoever logged them.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from contextvars import ContextVar
from datetime import datetime, timezone
from typing import Any

request_id_var: ContextVar[str | None] = ContextVar("advlab_request_id", default=None)
experiment_id_var: ContextVar[str | None] = ContextVar("advlab_experiment_id", default=None)

LOGGERS = ("advlab", "lab", "service", "worker")
_SECRETS = [
    (re.compile(r"(?i)(bearer\s+)[^\s\"',;]+"), r"\1[REDACTED]"),
    (re.compile(r"advlab_[A-Za-z0-9_\-]{16,}"), "advlab_[REDACTED]"),
    (re.compile(r"(?i)(authorization[\"']?\s*[:=]\s*[\"']?)[^\"',}\n]+"), r"\1[REDACTED]"),
]
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


def redact(text: str) -> str:
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text


class RedactFilter(logging.Filter):
    """Rewrites the record's message (args merged in) with secrets removed; adds the ids."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message or record.args:
            record.msg, record.args = cleaned, None
        if getattr(record, "request_id", None) is None:
            record.request_id = request_id_var.get()
        if getattr(record, "experiment_id", None) is None:
            record.experiment_id = experiment_id_var.get()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(),
            "level": record.levelname, "logger": record.name, "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and value is not None:
                doc[key] = value
        if record.exc_info:
            doc["exc"] = redact(self.formatException(record.exc_info))
        return json.dumps(doc, default=str)


def configure_logging(log_format: str = "json", level: int = logging.INFO) -> None:
    """Idempotent: one stderr handler on each of our loggers (they do not propagate, so a
    host's root configuration — uvicorn, celery — neither duplicates nor reformats them)."""
    for name in LOGGERS:
        logger = logging.getLogger(name)
        logger.setLevel(level)
        logger.propagate = False
        for handler in [h for h in logger.handlers if getattr(h, "advlab", False)]:
            logger.removeHandler(handler)
        handler = logging.StreamHandler(sys.stderr)
        handler.advlab = True  # type: ignore[attr-defined]
        handler.addFilter(RedactFilter())
        handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(
            "%(asctime)s %(levelname)s %(name)s [%(request_id)s %(experiment_id)s] %(message)s"))
        logger.addHandler(handler)

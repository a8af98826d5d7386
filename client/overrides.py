"""Dotted-path overrides of a spec document: `--set training.mode=adversarial` on the CLI,
`submit(spec, **{"training.mode": "adversarial"})` in the client. The server validates the
result; these only edit JSON (lab.dotted)."""

from __future__ import annotations

import json
from typing import Any

from lab.dotted import set_path

__all__ = ["parse_override", "set_path"]


def parse_override(text: str) -> tuple[str, Any]:
    """`training.mode=adversarial` → ("training.mode", "adversarial"); values parse as JSON
    when they can (numbers, lists, null, true), else stay strings."""
    path, sep, raw = text.partition("=")
    if not sep or not path.strip():
        raise ValueError(f"override {text!r} is not PATH=VALUE")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return path.strip(), value

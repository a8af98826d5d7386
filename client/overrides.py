"""Dotted-path overrides of a spec document: `--set training.mode=adversarial` on the CLI,
`submit(spec, **{"training.mode": "adversarial"})` in the client. The server validates the
result; these only edit JSON."""

from __future__ import annotations

import json
from typing import Any


def set_path(spec: dict, dotted: str, value: Any) -> None:
    """`set_path(spec, "training.optimizer.lr", 0.1)`; creates intermediate objects;
    numeric parts index lists (`evaluation.attacks.0.steps`)."""
    node: Any = spec
    parts = dotted.split(".")
    for part in parts[:-1]:
        if isinstance(node, list):
            node = node[int(part)]
            continue
        node = node.setdefault(part, {})
        if not isinstance(node, (dict, list)):
            raise ValueError(f"{dotted}: {part} is not an object")
    if isinstance(node, list):
        node[int(parts[-1])] = value
    else:
        node[parts[-1]] = value


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

"""Dotted paths into a JSON document (`training.optimizer.lr`, `evaluation.attacks.0.steps`):
the CLI's `--set`, the client's overrides and the sweep grid all edit specs through `set_path`."""

from __future__ import annotations

import copy
from typing import Any


def set_path(doc: dict, dotted: str, value: Any) -> None:
    """Set a copy of `value` at `dotted` in `doc`. Missing (or null) objects on the way are
    created; numeric parts index existing list elements. Raises ValueError when the path runs
    through a scalar or past the end of a list."""
    *parents, last = dotted.split(".")
    node: Any = doc
    for part in parents:
        if isinstance(node, list):
            node = node[_index(node, part, dotted)]
            continue
        if node.get(part) is None:
            node[part] = {}
        node = node[part]
        if not isinstance(node, (dict, list)):
            raise ValueError(f"{dotted}: {part} is not an object")
    if isinstance(node, list):
        node[_index(node, last, dotted)] = copy.deepcopy(value)
    else:
        node[last] = copy.deepcopy(value)


def _index(node: list, part: str, dotted: str) -> int:
    if not part.lstrip("-").isdigit() or not -len(node) <= int(part) < len(node):
        raise ValueError(f"{dotted}: no list element {part}")
    return int(part)

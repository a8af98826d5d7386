"""The dashboard's experiments table: which rows (filters, sort, a page of them), which columns
(spec fields and summary values the user picked), and the robust accuracy at a chosen radius.

Pages: for the `created` orders the store's keyset cursor (any table size); for the in-memory
sorts (name, status, progress, test accuracy) up to SORT_CAP matching experiments are read and
sorted, then cut into pages by number. Pure functions over the store; the router only parses.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence
from urllib.parse import urlencode

from advcore.summary import RunSummary, format_radius
from lab.status import STATUSES
from service import experiments as svc
from service.schemas import ExperimentRead

SORTS = {"created_desc": "newest first", "created_asc": "oldest first", "name": "name",
         "status": "status", "progress": "progress", "test_accuracy": "test accuracy"}
PAGE_SIZES = (25, 50, 100, 200)
DEFAULT_PAGE_SIZE = 50
SORT_CAP = 2000  # the in-memory sorts read at most this many experiments
MAX_COLUMNS = 12

# optional columns: key → header; `spec.<dotted path>` columns are open-ended
SUMMARY_COLUMNS = {
    "train_accuracy": "Train acc.",
    "fine_test_accuracy": "Fine (k-class) test acc.",
    "duration_s": "Duration (s)",
    "owner": "Owner",
    "attempts": "Attempts",
    "notes": "Notes",
}
SUGGESTED_SPEC = ("data.kind", "data.d", "data.k", "learner.kind", "learner.width",
                  "learner.init_scale", "training.mode", "training.epochs", "training.lr",
                  "seeds")
RADIUS_CHOICES = {"smallest": "smallest radius", "largest": "largest radius"}


@dataclass(frozen=True)
class Column:
    key: str  # "spec.learner.width" or a SUMMARY_COLUMNS key
    header: str
    numeric: bool = False


@dataclass
class TableView:
    rows: list[dict[str, Any]]
    columns: list[Column]
    radius: str
    radius_choices: dict[str, str]
    next_url: str | None
    prev_url: str | None
    first_url: str | None
    start: int  # 1-based index of the first row shown
    limit: int
    params: dict[str, Any] = field(default_factory=dict)


def parse_columns(raw: Sequence[str]) -> list[Column]:
    """`?col=spec.learner.width&col=duration_s` (comma lists too) → known columns, in order,
    duplicates and unknown keys dropped (a page never fails over a column)."""
    keys = list(dict.fromkeys(c.strip() for item in raw for c in item.split(",") if c.strip()))
    out: list[Column] = []
    for key in keys[:MAX_COLUMNS]:
        if key in SUMMARY_COLUMNS:
            out.append(Column(key, SUMMARY_COLUMNS[key],
                              numeric=key not in ("owner", "notes")))
        elif key.startswith("spec.") and len(key) > 5 and len(key) <= 120:
            out.append(Column(key, key[5:]))
    return out


def spec_value(spec: dict[str, Any], path: str) -> Any:
    node: Any = spec
    for part in path.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return node


def cell(exp: ExperimentRead, column: Column) -> Any:
    """The value a row shows in an optional column (None: not available)."""
    if column.key.startswith("spec."):
        value = spec_value(exp.spec, column.key[5:])
        return value if value is None or isinstance(value, (str, int, float, bool)) else \
            ", ".join(map(str, value)) if isinstance(value, list) else str(value)
    s = exp.summary
    if column.key == "train_accuracy":
        return s.clean_accuracy.train if s else None
    if column.key == "fine_test_accuracy":
        return s.fine.clean_accuracy.test if s and s.fine else None
    if column.key == "duration_s":
        return round(s.duration_s, 2) if s and s.duration_s is not None else None
    if column.key == "notes":
        return getattr(exp, "notes", None)
    return getattr(exp, column.key, None)


def _robust_points(summary: RunSummary) -> list[tuple[str, float, float | None]]:
    """(threat, radius, accuracy) against all attacks per threat (older summaries: per
    attack)."""
    if summary.robust_min:
        return [(r.threat, r.radius, r.accuracy) for r in summary.robust_min]
    return [(r.attack, r.radius, r.accuracy) for r in summary.robust_accuracy]


def robust_at(summary: RunSummary | None, choice: str) -> tuple[str, float | None]:
    """(label, accuracy) of the robust accuracy a row shows: the first threat's smallest
    positive radius, its largest (RunSummary.headline), or an explicit `threat@radius`."""
    if summary is None:
        return "", None
    points = _robust_points(summary)
    if not points:
        return "", None
    if choice in RADIUS_CHOICES:
        first = points[0][0]
        mine = [p for p in points if p[0] == first]
        positive = [p for p in mine if p[1] > 0] or mine
        threat, radius, acc = (min(positive, key=lambda p: p[1]) if choice == "smallest"
                               else max(mine, key=lambda p: p[1]))
        return f"{threat}@{format_radius(radius)}", acc
    for threat, radius, acc in points:
        if f"{threat}@{format_radius(radius)}" == choice:
            return choice, acc
    return "", None


def key_results(exp: ExperimentRead, radius: str = "smallest") -> dict[str, Any]:
    """Test clean accuracy, the robust accuracy at the chosen radius, and whether attacks
    disagree."""
    summary = exp.summary
    if summary is None:
        return {"test": None, "robust": None, "robust_label": "", "disagree": False}
    label, robust = robust_at(summary, radius)
    return {"test": summary.clean_accuracy.test, "robust": robust, "robust_label": label,
            "disagree": any(d.suspicious for d in summary.disagreements)}


def radius_choices(items: Sequence[ExperimentRead]) -> dict[str, str]:
    """The relative choices, then every `threat@radius` the rows have (numeric order)."""
    seen: dict[tuple[str, float], str] = {}
    for e in items:
        if e.summary is not None:
            for threat, radius, _ in _robust_points(e.summary):
                seen[(threat, radius)] = f"{threat}@{format_radius(radius)}"
    return {**RADIUS_CHOICES, **{label: label for _, label in sorted(seen.items())}}


def _sorted(items: list[ExperimentRead], sort: str) -> list[ExperimentRead]:
    if sort == "name":
        return sorted(items, key=lambda e: e.name.lower())
    if sort == "status":
        return sorted(items, key=lambda e: STATUSES.index(e.status))
    if sort == "progress":
        return sorted(items, key=lambda e: e.progress.fraction, reverse=True)
    if sort == "test_accuracy":
        return sorted(items, key=lambda e: key_results(e)["test"] or -1.0, reverse=True)
    return items


def build(store, *, status: Sequence[str], tag: str | None, name: str | None, sort: str,
          limit: int | None, cursor: str | None, page: int, cols: Sequence[str],
          radius: str | None) -> TableView:
    sort = sort if sort in SORTS else "created_desc"
    limit = limit if limit in PAGE_SIZES else DEFAULT_PAGE_SIZE
    status = [s for s in status if s in STATUSES]
    columns = parse_columns(cols)
    radius = radius or "smallest"
    params: dict[str, Any] = {"status": status, "tag": tag or "", "name": name or "",
                              "sort": sort, "limit": limit,
                              "col": [c.key for c in columns], "radius": radius}

    def url(**extra: Any) -> str:
        query = {k: v for k, v in {**params, **extra}.items() if v not in ("", [], None)}
        return "/?" + urlencode(query, doseq=True)

    listing = dict(status=status, tag=tag or None, name=name or None, spec_fields={})
    prev_url = first_url = next_url = None
    if sort in ("created_desc", "created_asc"):
        result = svc.list_page(store, **listing, limit=limit, cursor=cursor or None, order=sort)
        items = result.items
        next_url = url(cursor=result.next_cursor) if result.next_cursor else None
        first_url = url() if cursor else None
        start = 1
    else:
        everything: list[ExperimentRead] = []
        next_cursor = None
        while len(everything) < SORT_CAP:
            chunk = svc.list_page(store, **listing, limit=500, cursor=next_cursor,
                                  order="created_desc")
            everything.extend(chunk.items)
            next_cursor = chunk.next_cursor
            if next_cursor is None:
                break
        ordered = _sorted(everything, sort)
        page = max(page, 1)
        items = ordered[(page - 1) * limit: page * limit]
        start = (page - 1) * limit + 1
        next_url = url(page=page + 1) if page * limit < len(ordered) else None
        prev_url = url(page=page - 1) if page > 1 else None
        first_url = url() if page > 2 else None
    choices = radius_choices(items)
    if radius not in choices:
        choices[radius] = radius  # kept selectable: other pages may have it
    rows = [{"exp": e, "key": key_results(e, radius), "cells": [cell(e, c) for c in columns]}
            for e in items]
    return TableView(rows=rows, columns=columns, radius=radius, radius_choices=choices,
                     next_url=next_url, prev_url=prev_url, first_url=first_url, start=start,
                     limit=limit, params=params)

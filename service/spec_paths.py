"""JSON paths in the experiment spec, found by walking its pydantic type tree: translating
pydantic error locations into document paths, checking `spec.<path>` list filters, and naming
the kinds a discriminated union accepts."""

from __future__ import annotations

import types
import typing
from typing import Any, Union

from pydantic import BaseModel

from advcore.spec import ExperimentSpec


def _unwrap(tp: Any) -> Any:
    while typing.get_origin(tp) is typing.Annotated:
        tp = typing.get_args(tp)[0]
    return tp


def _is_union(tp: Any) -> bool:
    return typing.get_origin(tp) in (Union, types.UnionType)


def _member_for(tp: Any, part: str) -> Any:
    """The union member a pydantic loc element names: a discriminator tag (`multi_cluster`) picks
    that model; a type label (`float`, `list[...]`) leaves us without a type to walk."""
    for member in typing.get_args(tp):
        member = _unwrap(member)
        if isinstance(member, type) and issubclass(member, BaseModel):
            kind = member.model_fields.get("kind")
            if kind is not None and kind.default == part:
                return member
            if member.__name__ == part:
                return member
    return None


def json_path(loc: tuple | list, root: Any = ExperimentSpec) -> list[str | int]:
    """Translate a pydantic error location inside `root` into the JSON path of the document."""
    out: list[str | int] = []
    tp: Any = root
    for part in loc:
        tp = _unwrap(tp)
        # X | None adds no loc element: step into X without consuming `part`
        while _is_union(tp):
            members = [m for m in typing.get_args(tp) if m is not type(None)]
            if len(members) != 1:
                break
            tp = _unwrap(members[0])
        if _is_union(tp):  # a real union: this element names the member, not a field
            tp = _member_for(tp, str(part))
            continue
        out.append(part)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            field = tp.model_fields.get(part) if isinstance(part, str) else None
            tp = field.annotation if field is not None else None
        elif typing.get_origin(tp) in (list, tuple) and isinstance(part, int):
            tp = typing.get_args(tp)[0]
        else:
            tp = None
    return out


def spec_path_exists(segments: list[str], root: Any = ExperimentSpec) -> bool:
    """Whether `data.kind` / `evaluation.attacks.0.radii` names a field of some spec variant."""
    if not segments:
        return True
    tp = _unwrap(root)
    if _is_union(tp):
        return any(spec_path_exists(segments, m) for m in typing.get_args(tp)
                   if m is not type(None))
    head, rest = segments[0], segments[1:]
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        field = tp.model_fields.get(head)
        return field is not None and spec_path_exists(rest, field.annotation)
    if typing.get_origin(tp) in (list, tuple) and head.isdigit():
        return spec_path_exists(rest, typing.get_args(tp)[0])
    return False


def kinds_at(path: list[str | int]) -> list[str]:
    """The `kind` tags of the discriminated union at a JSON path of the spec (or [])."""
    tp: Any = ExperimentSpec
    for part in path:
        tp = _unwrap(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel) and isinstance(part, str):
            field = tp.model_fields.get(part)
            tp = field.annotation if field is not None else None
        elif typing.get_origin(tp) in (list, tuple) and isinstance(part, int):
            tp = typing.get_args(tp)[0]
        else:
            return []
    tp = _unwrap(tp)
    if not _is_union(tp):
        return []
    return [m.model_fields["kind"].default for m in map(_unwrap, typing.get_args(tp))
            if isinstance(m, type) and issubclass(m, BaseModel) and "kind" in m.model_fields]

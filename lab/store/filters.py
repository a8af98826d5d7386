"""WHERE clauses for listing experiments: status, tag, name, spec hash and spec fields.

Tags and the spec are JSON columns, so the tag and spec-field tests are per dialect: SQLite's
json_each/json_extract, PostgreSQL's JSONB `@>` and `#>>`. Spec field values compare as text
("200", "1.0", "true", "patch"), the way they arrive in a query string.
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

from lab.store.base import ExperimentFilter
from lab.store.orm import ExperimentRow

E = ExperimentRow.__table__


def _sqlite_path(segments: list[str]) -> str:
    return "$" + "".join(f"[{s}]" if s.isdigit() else "." + json.dumps(s) for s in segments)


def _tag_condition(tag: str, dialect: str) -> sa.ColumnElement[bool]:
    if dialect == "postgresql":
        return sa.cast(E.c.tags, JSONB).contains([tag])
    return sa.text("EXISTS (SELECT 1 FROM json_each(experiments.tags) AS t WHERE t.value = :tag)"
                   ).bindparams(sa.bindparam("tag", tag, unique=True))


def _spec_field(path: str, value: str, dialect: str) -> sa.ColumnElement[bool]:
    segments = [s for s in path.split(".") if s]
    if not segments:
        raise ValueError(f"empty spec field path: {path!r}")
    if dialect == "postgresql":
        text = sa.cast(E.c.spec, JSONB).op("#>>")(sa.literal(segments, ARRAY(sa.Text)))
        return text == value
    json_path = sa.literal(_sqlite_path(segments))
    as_text = sa.case(
        (sa.func.json_type(E.c.spec, json_path) == "true", "true"),
        (sa.func.json_type(E.c.spec, json_path) == "false", "false"),
        else_=sa.cast(sa.func.json_extract(E.c.spec, json_path), sa.Text),
    )
    return as_text == value


def experiment_conditions(flt: ExperimentFilter, dialect: str) -> list[sa.ColumnElement[bool]]:
    conds: list[sa.ColumnElement[bool]] = []
    if flt.status:
        conds.append(E.c.status.in_(list(flt.status)))
    if flt.tag is not None:
        conds.append(_tag_condition(flt.tag, dialect))
    if flt.name_contains:
        conds.append(E.c.name.icontains(flt.name_contains, autoescape=True))
    if flt.spec_hash is not None:
        conds.append(E.c.spec_hash == flt.spec_hash)
    for path, value in flt.spec_fields.items():
        conds.append(_spec_field(path, str(value), dialect))
    if flt.owner is not None:
        conds.append(E.c.owner == flt.owner)
    return conds

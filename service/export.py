"""Export recorded series as CSV or Parquet: one long-form table, one row per point.

Columns: `experiment_id, name, seed, step, value` (a sweep export adds its grid columns in
front, see service.sweeps). Parquet files carry the experiment's resolved spec and summary as
JSON in the schema metadata (keys `advlab.spec`, `advlab.summary`), so a file on its own says
what produced it. `write_table` is the one writer both exports use.
"""

from __future__ import annotations

import io
import json
from typing import TYPE_CHECKING, Mapping

from lab.store.base import Experiment, MetricPoint, Store

if TYPE_CHECKING:
    import pandas as pd

FORMATS = {"csv": "text/csv; charset=utf-8", "parquet": "application/vnd.apache.parquet"}
COLUMNS = ["experiment_id", "name", "seed", "step", "value"]


def points_frame(experiment_id: str, points: Mapping[str, list[MetricPoint]]) -> "pd.DataFrame":
    """Store series → long-form DataFrame sorted by (name, seed, step)."""
    import pandas as pd

    rows = [(experiment_id, p.name, p.seed, p.step, p.value)
            for name in sorted(points) for p in points[name]]
    frame = pd.DataFrame(rows, columns=COLUMNS)
    frame = frame.astype({"experiment_id": "string", "name": "string", "seed": "int64",
                          "step": "int64", "value": "float64"})
    return frame.sort_values(["name", "seed", "step"], kind="stable", ignore_index=True)


def experiment_frame(store: Store, exp: Experiment) -> "pd.DataFrame":
    """Every recorded point of an experiment (no downsampling)."""
    return points_frame(exp.id, store.get_metrics(exp.id))


def write_table(frame: "pd.DataFrame", fmt: str, metadata: Mapping[str, object] | None = None
                ) -> bytes:
    """CSV (header row, no index) or Parquet bytes; `metadata` values are stored as JSON in the
    Parquet schema metadata (ignored for CSV)."""
    if fmt == "csv":
        return frame.to_csv(index=False).encode()
    if fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pandas(frame, preserve_index=False)
        extra = {k.encode(): json.dumps(v, default=str).encode() for k, v in (metadata or {}).items()}
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), **extra})
        buf = io.BytesIO()
        pq.write_table(table, buf)
        return buf.getvalue()
    raise ValueError(f"unknown export format {fmt!r}; one of {sorted(FORMATS)}")


def export_experiment(store: Store, exp: Experiment, fmt: str) -> bytes:
    metadata = {"advlab.experiment_id": exp.id, "advlab.name": exp.name,
                "advlab.status": exp.status, "advlab.spec": exp.spec,
                "advlab.summary": exp.summary}
    return write_table(experiment_frame(store, exp), fmt, metadata)


def attachment(filename: str) -> dict[str, str]:
    """Content-Disposition header for a download."""
    return {"Content-Disposition": f'attachment; filename="{filename}"'}

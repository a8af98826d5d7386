"""A handle on a server-side sweep (POST /v1/sweeps): members, status counts, the aggregate
table (mean ± std over seeds per grid point), export and band plots."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from client.errors import TERMINAL, JobFailed

if TYPE_CHECKING:
    import pandas as pd

    from client.api import Client, Experiment


class Sweep:
    def __init__(self, client: Client, sweep_id: str) -> None:
        self.client = client
        self.id = sweep_id

    def __repr__(self) -> str:
        return f"Sweep({self.id!r})"

    @property
    def _path(self) -> str:
        return f"/v1/sweeps/{self.id}"

    def info(self) -> dict:
        return self.client.get_json(self._path)

    @property
    def status(self) -> str:
        return self.info()["status"]

    def experiments(self) -> list[Experiment]:
        return [self.client.experiment(m["experiment"]["id"]) for m in self.info()["members"]
                if m.get("experiment")]

    def wait(self, progress: bool = False, poll_s: float = 1.0, timeout_s: float | None = None,
             raise_on_failure: bool = True) -> dict:
        """Poll until every member has ended; the bar counts finished members."""
        bar = None
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        try:
            while True:
                info = self.info()
                counts = info.get("counts") or {}
                if progress and bar is None:
                    from tqdm import tqdm

                    bar = tqdm(total=sum(counts.values()), desc=f"sweep {self.id[:8]}",
                               unit="member", dynamic_ncols=True)
                if bar is not None:
                    bar.n = sum(counts.get(s, 0) for s in TERMINAL)
                    bar.set_postfix_str(", ".join(f"{k} {v}" for k, v in counts.items() if v))
                    bar.refresh()
                if info["status"] in TERMINAL:
                    break
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError(f"sweep {self.id} still {info['status']} after {timeout_s}s")
                time.sleep(poll_s)
        finally:
            if bar is not None:
                bar.close()
        if raise_on_failure and info["status"] != "succeeded":
            raise JobFailed(f"sweep {self.id} {info['status']}: {info.get('counts')}", info)
        return info

    def aggregate(self) -> "pd.DataFrame":
        """One row per (grid point, metric): the grid values, metric, mean, std, n, min, max."""
        import pandas as pd

        rows: list[dict[str, Any]] = []
        for row in self.info()["aggregate"]:
            for metric, stats in row["metrics"].items():
                rows.append({**row["point"], "label": row["label"], "metric": metric, **stats})
        return pd.DataFrame(rows)

    def cancel(self) -> dict:
        return self.client.request("POST", f"{self._path}/cancel").json()

    def export(self, path: str | Path, fmt: str | None = None) -> Path:
        path = Path(path)
        fmt = fmt or path.suffix.lstrip(".").lower() or "csv"
        path.write_bytes(self.client.request("GET", f"{self._path}/export.{fmt}").content)
        return path

    def plot(self, metric: str, path: str | Path | None = None, fmt: str | None = None) -> bytes:
        """Mean ± std band plot of one metric, one line per grid point."""
        fmt = fmt or (Path(path).suffix.lstrip(".").lower() if path else "") or "png"
        content = self.client.request(
            "GET", f"{self._path}/plots/{quote(metric, safe='/@')}.{fmt}").content
        if path is not None:
            Path(path).write_bytes(content)
        return content

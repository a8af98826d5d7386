"""A handle on a server-side sweep (POST /v1/sweeps): members, status counts, the aggregate
table (mean ± std over seeds per grid point), export and band plots."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from client.errors import TERMINAL, JobFailed
from client.handle import Handle, image

if TYPE_CHECKING:
    import pandas as pd

    from client.api import Experiment


class Sweep(Handle):
    """A handle on one server-side sweep; every property reads fresh state."""

    COLLECTION = "sweeps"

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

    def plot(self, metric: str, path: str | Path | None = None, fmt: str | None = None) -> bytes:
        """Mean ± std band plot of one metric, one line per grid point."""
        return image(self.client, f"{self._path}/plots/{quote(metric, safe='/@')}", path, fmt)

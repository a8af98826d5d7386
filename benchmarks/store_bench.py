"""Store benchmark: metric write throughput and fetch latency of a 10^5-point series, with
max_points=1000 (downsampled in SQL) and without, on SQLite and PostgreSQL.

    .venv/bin/python benchmarks/store_bench.py --backend both --json bench_store.json

PostgreSQL: a throwaway database is created from ADVLAB_TEST_PG_URL (default
postgresql+psycopg://postgres@127.0.0.1:5432/test) and dropped afterwards. Goal: fetch p95
<= 50 ms with max_points. Not a test: timings depend on the machine; this prints a table.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import throwaway_pg_database  # noqa: E402
from lab.store import open_store  # noqa: E402
from lab.store.base import MetricPoint  # noqa: E402
from lab.store.migrate import upgrade  # noqa: E402


@contextmanager
def sqlite_url() -> Iterator[str]:
    with tempfile.TemporaryDirectory() as tmp:
        yield f"sqlite:///{tmp}/bench.db"


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def bench_backend(url: str, n_points: int, chunk: int, repeats: int) -> dict[str, float]:
    upgrade("head", url)
    store = open_store(url)
    try:
        exp, _ = store.create_experiment(name="bench", tags=[], spec={}, spec_hash="bench",
                                         total_steps=n_points)
        attempt = store.start_attempt(exp.id, "bench").attempts
        # a noisy decaying curve: every bucket has its own min and max
        points = [MetricPoint("train/loss", i, math.exp(-i / 2e4) + 0.1 * math.sin(i * 0.37), 0)
                  for i in range(n_points)]
        t0 = time.perf_counter()
        for i in range(0, n_points, chunk):  # the worker's pattern: one call per flush
            store.add_metrics(exp.id, attempt, points[i:i + chunk])
        write_s = time.perf_counter() - t0

        def fetch_ms(max_points: int | None, times: int) -> list[float]:
            out = []
            for _ in range(times):
                t = time.perf_counter()
                series = store.get_metrics(exp.id, names=["train/loss"], max_points=max_points)
                out.append((time.perf_counter() - t) * 1000)
                expected = n_points if max_points is None else None
                got = len(series["train/loss"])
                assert got == expected if expected else got <= max_points, got
            return out

        fetch_ms(1000, 2)  # warm caches and statement compilation
        down = fetch_ms(1000, repeats)
        full = fetch_ms(None, max(3, repeats // 5))
        return {
            "points": n_points, "write_chunk": chunk,
            "write_points_per_s": n_points / write_s,
            "fetch_max1000_p50_ms": statistics.median(down),
            "fetch_max1000_p95_ms": percentile(down, 0.95),
            "fetch_full_p50_ms": statistics.median(full),
            "fetch_full_p95_ms": percentile(full, 0.95),
        }
    finally:
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument("--chunk", type=int, default=5_000, help="points per add_metrics call")
    parser.add_argument("--repeats", type=int, default=40)
    parser.add_argument("--json", type=Path, default=None, help="write the results as JSON here")
    args = parser.parse_args()

    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    results: dict[str, dict[str, float]] = {}
    for backend in backends:
        with (sqlite_url() if backend == "sqlite" else throwaway_pg_database("advlab_bench")) as url:
            results[backend] = bench_backend(url, args.points, args.chunk, args.repeats)

    cols = ["write_points_per_s", "fetch_max1000_p50_ms", "fetch_max1000_p95_ms",
            "fetch_full_p50_ms", "fetch_full_p95_ms"]
    print(f"{'backend':<10}" + "".join(f"{c:>24}" for c in cols))
    for backend, r in results.items():
        print(f"{backend:<10}" + "".join(f"{r[c]:>24.1f}" for c in cols))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

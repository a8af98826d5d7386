"""API benchmark through real HTTP: uvicorn serving service.main.create_app on a free local port,
an httpx client, a real migrated store and the real enqueue into a filesystem broker (nobody
consumes). Measures submit latency (p50/p95 over --submits POSTs, enqueue included) and the fetch
latency of a 10^5-point metric series with max_points=1000 and without, on SQLite and PostgreSQL.

    .venv/bin/python benchmarks/api_bench.py --backend both --json bench_api.json

PostgreSQL: a throwaway database is created from ADVLAB_TEST_PG_URL (default
postgresql+psycopg://postgres@127.0.0.1:5432/test) and dropped afterwards. Goals (issue 3):
submit p95 <= 20 ms, fetch p95 <= 50 ms with max_points. Not a test: this prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402
import uvicorn  # noqa: E402

from benchmarks._common import percentile, throwaway_pg_database  # noqa: E402
from devtools.poll import poll  # noqa: E402
from lab.config import Settings  # noqa: E402
from service.main import create_app  # noqa: E402
from lab.store.base import MetricPoint  # noqa: E402
from lab.store.migrate import upgrade  # noqa: E402

SPEC = {"name": "bench", "tags": ["bench"],
        "data": {"kind": "multi_cluster", "d": 50, "k": 4, "n_train": 200, "n_test": 100},
        "learner": {"kind": "two_layer_relu", "width": 16},
        "training": {"epochs": 100_000},
        "evaluation": {"every": 1, "attacks": [{"kind": "pgd", "radii": [1, 2, 4]}]}}


@contextmanager
def database(backend: str, tmp: Path) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{tmp / 'bench.db'}"
        return
    with throwaway_pg_database("advlab_apibench") as url:
        yield url


@contextmanager
def http_server(settings: Settings) -> Iterator[tuple[str, object]]:
    """uvicorn in a thread on a free port; yields (base URL, app)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = create_app(settings)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()

    def started() -> bool:
        if not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        return server.started

    poll(started, timeout=20, every=0.05, message="uvicorn did not start")
    try:
        yield f"http://127.0.0.1:{port}", app
    finally:
        server.should_exit = True
        thread.join(10)


def timed(fn, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        out.append((time.perf_counter() - start) * 1000)
    return out


def row(backend: str, what: str, ms: list[float], **extra) -> dict:
    return {"backend": backend, "measure": what, "n": len(ms), "p50_ms": statistics.median(ms),
            "p95_ms": percentile(ms, 0.95), "max_ms": max(ms), **extra}


def bench_backend(backend: str, submits: int, points: int, fetches: int) -> list[dict]:
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp, database(backend, Path(tmp)) as url:
        settings = Settings(home=Path(tmp), database_url=url, broker_url="filesystem://")
        upgrade("head", url)
        with http_server(settings) as (base, app), httpx.Client(base_url=base) as client:
            for _ in range(5):  # warm-up: connections, first enqueue, OpenAPI routes
                client.post("/v1/experiments", json=SPEC).raise_for_status()

            def submit() -> None:
                r = client.post("/v1/experiments", json=SPEC)
                assert r.status_code == 202, r.text

            rows.append(row(backend, f"submit ({submits}x)", timed(submit, submits)))

            store = app.state.store
            eid = client.post("/v1/experiments", json=SPEC).json()["id"]
            attempt = store.start_attempt(eid, "bench").attempts
            series = [MetricPoint("train/loss", s, 1 / (1 + s) + (s % 7) * 1e-3, 0)
                      for s in range(points)]
            store.add_metrics(eid, attempt, series)
            url_m = f"/v1/experiments/{eid}/metrics"

            def fetch(max_points: int | None):
                params = {"names": "train/loss"}
                if max_points:
                    params["max_points"] = max_points

                def go() -> None:
                    r = client.get(url_m, params=params)
                    r.raise_for_status()
                    got = len(r.json()["series"][0]["points"])
                    assert got == points if max_points is None else got <= max_points
                return go

            fetch(1000)()
            rows.append(row(backend, f"metrics {points} pts, max_points=1000",
                            timed(fetch(1000), fetches)))
            rows.append(row(backend, f"metrics {points} pts, all points",
                            timed(fetch(None), max(3, fetches // 5))))
            rows.append(row(backend, "list 50 experiments",
                            timed(lambda: client.get("/v1/experiments").raise_for_status(),
                                  fetches)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--submits", type=int, default=500)
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument("--fetches", type=int, default=50)
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    args = parser.parse_args()
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    rows = [r for b in backends for r in bench_backend(b, args.submits, args.points, args.fetches)]
    print(f"{'backend':9} {'measure':42} {'n':>4} {'p50 ms':>9} {'p95 ms':>9} {'max ms':>9}")
    for r in rows:
        print(f"{r['backend']:9} {r['measure']:42} {r['n']:>4} {r['p50_ms']:>9.2f} "
              f"{r['p95_ms']:>9.2f} {r['max_ms']:>9.2f}")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "cpu_count": os.cpu_count()}, indent=2))


if __name__ == "__main__":
    main()

"""Load benchmark of the lab deployment: N concurrent clients submit tiny specs and poll them
against a real stack — PostgreSQL (a throwaway database) + Redis (a queue of its own) + the API
(uvicorn) + W Celery workers — for D seconds, then print throughput, p50/p95/p99 latency per
request kind (submit, poll, list) and the error counts.

    .venv/bin/python benchmarks/load_bench.py                       # 200 clients, 60 s, 2 workers
    .venv/bin/python benchmarks/load_bench.py --quick               # 20 clients, 10 s
    .venv/bin/python benchmarks/load_bench.py --clients 100 --duration 30 --json load.json

Each client loops: POST a tiny spec (d=8, 2 epochs), poll GET /v1/experiments/{id} every
--poll-s until it is finished (or the run ends), and every --list-every polls GET the list.
Traffic goes only to 127.0.0.1; the run is bounded by --duration and --max-requests and stops
by itself; the stack is torn down, the database dropped and the Redis queue keys deleted.
PostgreSQL: ADVLAB_TEST_PG_URL (default postgresql+psycopg://postgres@127.0.0.1:5432/test);
Redis: ADVLAB_TEST_REDIS_URL (default redis://127.0.0.1:6379/0). Not a test: it prints a table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402

from benchmarks._common import percentile, throwaway_pg_database  # noqa: E402
from devtools.stack import TERMINAL, launch_stack  # noqa: E402

REDIS_URL = os.environ.get("ADVLAB_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
KINDS = ("submit", "poll", "list")


def tiny_spec(client: int, n: int) -> dict:
    """A job of a fraction of a second: the load is on the API, the store and the broker."""
    return {"name": f"load c{client} #{n}", "tags": ["load"], "seed": n % 1000, "device": "cpu",
            "data": {"kind": "multi_cluster", "d": 8, "k": 2, "n_train": 32, "n_test": 32},
            "learner": {"kind": "two_layer_relu", "width": 4},
            "training": {"epochs": 2, "optimizer": {"kind": "gd", "lr": 0.5}},
            "evaluation": {"every": 1, "attacks": [], "record": []}}


@dataclass
class Tally:
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))
    submitted: list[str] = field(default_factory=list)
    seen_finished: set[str] = field(default_factory=set)
    requests: int = 0

    def observe(self, kind: str, seconds: float, error: str | None) -> None:
        self.requests += 1
        if error is None:
            self.latencies[kind].append(seconds)
        else:
            self.errors[kind][error] += 1


async def _request(tally: Tally, http: httpx.AsyncClient, kind: str, method: str, url: str,
                   ok: tuple[int, ...], **kwargs) -> httpx.Response | None:
    start = time.perf_counter()
    try:
        response = await http.request(method, url, **kwargs)
    except httpx.HTTPError as exc:
        tally.observe(kind, time.perf_counter() - start, type(exc).__name__)
        return None
    elapsed = time.perf_counter() - start
    tally.observe(kind, elapsed, None if response.status_code in ok else str(response.status_code))
    return response if response.status_code in ok else None


async def client_loop(index: int, http: httpx.AsyncClient, tally: Tally, stop_at: float,
                      args: argparse.Namespace) -> None:
    n = 0
    while time.monotonic() < stop_at and tally.requests < args.max_requests:
        response = await _request(tally, http, "submit", "POST", "/v1/experiments", (200, 202),
                                  json=tiny_spec(index, n))
        n += 1
        if response is None:
            await asyncio.sleep(args.poll_s)
            continue
        experiment_id = response.json()["id"]
        tally.submitted.append(experiment_id)
        polls = 0
        while time.monotonic() < stop_at and tally.requests < args.max_requests:
            await asyncio.sleep(args.poll_s)
            polls += 1
            if polls % args.list_every == 0:
                await _request(tally, http, "list", "GET", "/v1/experiments", (200,),
                               params={"limit": 20, "tag": "load"})
            got = await _request(tally, http, "poll", "GET", f"/v1/experiments/{experiment_id}",
                                 (200,))
            if got is not None and got.json()["status"] in TERMINAL:
                tally.seen_finished.add(experiment_id)
                break


async def drive(base_url: str, args: argparse.Namespace) -> tuple[Tally, float]:
    tally = Tally()
    limits = httpx.Limits(max_connections=args.clients, max_keepalive_connections=args.clients)
    async with httpx.AsyncClient(base_url=base_url, timeout=args.timeout_s, limits=limits) as http:
        start = time.monotonic()
        stop_at = start + args.duration
        await asyncio.gather(*(client_loop(i, http, tally, stop_at, args)
                               for i in range(args.clients)))
        return tally, time.monotonic() - start


def job_counts(database_url: str, ids: list[str]) -> Counter:
    """Final status of every submitted job, read from the store (the source of truth)."""
    from lab.store import open_store

    store = open_store(database_url)
    try:
        counts: Counter = Counter()
        for experiment_id in ids:
            counts[store.get_experiment(experiment_id).status] += 1
        return counts
    finally:
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--poll-s", type=float, default=0.5, help="poll period per client")
    parser.add_argument("--list-every", type=int, default=5, help="a list request every N polls")
    parser.add_argument("--timeout-s", type=float, default=30.0, help="per request")
    parser.add_argument("--max-requests", type=int, default=500_000, help="hard cap")
    parser.add_argument("--quick", action="store_true", help="20 clients for 10 s")
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    args = parser.parse_args()
    if args.quick:
        args.clients, args.duration = min(args.clients, 20), min(args.duration, 10.0)

    import redis

    queue = f"advlab-load-{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory(prefix="advlab-load-") as tmp, \
            throwaway_pg_database("advlab_load") as database_url:
        stack = launch_stack(Path(tmp), {"ADVLAB_DATABASE_URL": database_url,
                                         "ADVLAB_BROKER_URL": REDIS_URL, "ADVLAB_QUEUE": queue,
                                         "ADVLAB_LOG_FORMAT": "text"}, workers=args.workers)
        try:
            print(f"stack up: API {stack.base_url}, {args.workers} workers, queue {queue}; "
                  f"{args.clients} clients for {args.duration:g} s", flush=True)
            tally, wall = asyncio.run(drive(stack.base_url, args))
            finished = job_counts(database_url, tally.submitted)
        finally:
            stack.close()
            client = redis.Redis.from_url(REDIS_URL)
            client.delete(queue, f"_kombu.binding.{queue}")
            client.close()

    rows = []
    for kind in KINDS:
        ok = tally.latencies.get(kind, [])
        errors = sum(tally.errors.get(kind, Counter()).values())
        rows.append({"kind": kind, "ok": len(ok), "errors": errors,
                     "rps": len(ok) / wall, "p50_ms": 1e3 * percentile(ok, 0.50),
                     "p95_ms": 1e3 * percentile(ok, 0.95), "p99_ms": 1e3 * percentile(ok, 0.99),
                     "max_ms": 1e3 * max(ok, default=float("nan")),
                     "error_kinds": dict(tally.errors.get(kind, {}))})
    total_ok = sum(r["ok"] for r in rows)
    print(f"\n{'kind':<8}{'ok':>8}{'errors':>8}{'req/s':>9}{'p50 ms':>9}{'p95 ms':>9}"
          f"{'p99 ms':>9}{'max ms':>9}  error kinds")
    for r in rows:
        print(f"{r['kind']:<8}{r['ok']:>8}{r['errors']:>8}{r['rps']:>9.1f}{r['p50_ms']:>9.1f}"
              f"{r['p95_ms']:>9.1f}{r['p99_ms']:>9.1f}{r['max_ms']:>9.1f}  {r['error_kinds'] or ''}")
    print(f"{'all':<8}{total_ok:>8}{sum(r['errors'] for r in rows):>8}{total_ok / wall:>9.1f}")
    print(f"\njobs submitted {len(tally.submitted)} in {wall:.1f} s "
          f"({len(tally.submitted) / wall:.1f}/s); final status in the store: {dict(finished)}; "
          f"finished jobs {finished.get('succeeded', 0) / wall:.2f}/s with {args.workers} workers")
    if args.json:
        args.json.write_text(json.dumps({
            "clients": args.clients, "duration_s": args.duration, "wall_s": wall,
            "workers": args.workers, "poll_s": args.poll_s, "cpu_count": os.cpu_count(),
            "rows": rows, "jobs_submitted": len(tally.submitted),
            "jobs_by_status": dict(finished)}, indent=2))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()

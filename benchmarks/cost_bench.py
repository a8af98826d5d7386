"""advcore.cost's estimates against measurement, for every example spec.

    .venv/bin/python benchmarks/cost_bench.py [--full NAME ...] [--store] [--json PATH]
                                              [NAME ...]

Each example runs at its SHRUNK size (devtools/measured.py: the sizes the test suite
checks, fake image files where the data set is not on disk); `--full NAME` runs that example
as written instead (CPU-sized ones only). Per example: estimated vs measured FLOPs
(FlopCounterMode's counting), peak bytes (torch's CPU allocations + the data build's host
memory), and seconds: the estimate's seconds are FLOPs / this machine's single-thread matmul
rate, so measured / estimated seconds is the slowdown a deadline's safety factor must cover.
`--store` also streams each run into a fresh SQLite store through the worker's observer and
reports its growth against the estimated stored bytes. Single-threaded throughout.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from advcore.cost import estimate  # noqa: E402
from advcore.spec import parse_spec  # noqa: E402
from devtools.measured import (SHRUNK, fake_image_files, measure, shrunk,  # noqa: E402
                                    single_thread)


def matmul_gflops(n: int = 512, repeat: int = 20) -> float:
    """Single-thread float32 matmul rate (GFLOP/s): the speed FLOP estimates are priced at."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    with single_thread():
        a @ b
        best = float("inf")
        for _ in range(repeat):
            start = time.perf_counter()
            a @ b
            best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def store_growth(spec) -> float:
    """Bytes a fresh SQLite store grows by when `spec` runs through the worker's observer
    (bytes in use on its pages, SQLite's dbstat, less the same store before the run: a small
    run fits in the pages every table starts with, so file size would not move)."""
    import sqlalchemy as sa

    from lab.store.migrate import upgrade
    from lab.store.session import make_engine
    from lab.store.sql import SqlStore
    from worker.observer import StoreObserver
    from advcore.run import run_experiment

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "store.db"
        url = f"sqlite:///{path}"
        upgrade("head", url=url)
        engine = make_engine(url)
        store = SqlStore(engine)

        def size() -> int:  # bytes in use on every table's and index's pages (dbstat)
            with engine.connect() as conn:
                conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
                return conn.exec_driver_sql("SELECT sum(pgsize - unused) FROM dbstat").scalar()

        exp, _ = store.create_experiment(name="bench", tags=[], spec=spec.model_dump(mode="json"),
                                         spec_hash=spec.spec_hash(), total_steps=spec.total_steps)
        exp = store.start_attempt(exp.id, "bench")
        before = size()
        observer = StoreObserver(store, exp.id, exp.attempts)
        with single_thread():
            summary = run_experiment(spec, observer, device="cpu")
        observer.flush()
        store.finish(exp.id, exp.attempts, "succeeded", summary=summary.to_stored())
        after = size()
        store.close()
        with contextlib.suppress(Exception):
            sa.create_engine(url).dispose()
    return float(after - before)


def run_one(name: str, full: bool, with_store: bool, rate: float) -> dict:
    body = json.loads((ROOT / "examples" / f"{name}.json").read_text())
    files = None
    if not full:
        body, files = shrunk(name, body)
    with tempfile.TemporaryDirectory() as tmp:
        fake = fake_image_files(body["data"]["dataset"], files, Path(tmp)) if files \
            else contextlib.nullcontext()
        with fake:
            spec = parse_spec(body)
            cost = estimate(spec)
            measured = measure(spec, seconds=True)
            stored = store_growth(spec) if with_store else None
    return {
        "example": name, "size": "full" if full else "shrunk",
        "flops": {"estimated": cost.flops, "measured": measured.flops},
        "peak_bytes": {"estimated": cost.peak_bytes, "measured": measured.peak_bytes,
                       "measured_torch": measured.torch_peak, "measured_host": measured.host_peak,
                       "phase": cost.peak_phase},
        "seconds": {"estimated": cost.flops / (rate * 1e9), "measured": measured.seconds},
        "stored_bytes": {"estimated": cost.stored_bytes, "measured": stored},
        "n_evaluations": cost.n_evaluations,
        "dominant": {q: cost.path(q) for q in ("flops", "peak_bytes", "stored_bytes")},
    }


def _ratio(row: dict, key: str) -> float:
    part = row[key]
    return part["estimated"] / part["measured"] if part["measured"] else float("nan")


def print_table(rows: list[dict], rate: float) -> None:
    print(f"single-thread matmul rate: {rate:.1f} GFLOP/s (estimated seconds = FLOPs / rate)")
    head = (f"{'example':34s} {'GFLOP est':>10s} {'meas':>9s} {'ratio':>6s} | {'MiB est':>8s} "
            f"{'meas':>8s} {'ratio':>6s} | {'s est':>7s} {'meas':>7s} {'x':>5s}")
    if any(r["stored_bytes"]["measured"] is not None for r in rows):
        head += f" | {'KiB store est':>13s} {'meas':>8s}"
    print(head)
    print("-" * len(head))
    for r in rows:
        line = (f"{r['example'] + (' (full)' if r['size'] == 'full' else ''):34s} "
                f"{r['flops']['estimated'] / 1e9:10.3f} {r['flops']['measured'] / 1e9:9.3f} "
                f"{_ratio(r, 'flops'):6.2f} | {r['peak_bytes']['estimated'] / 2**20:8.2f} "
                f"{r['peak_bytes']['measured'] / 2**20:8.2f} {_ratio(r, 'peak_bytes'):6.2f} | "
                f"{r['seconds']['estimated']:7.3f} {r['seconds']['measured']:7.3f} "
                f"{r['seconds']['measured'] / max(r['seconds']['estimated'], 1e-9):5.1f}")
        if r["stored_bytes"]["measured"] is not None:
            line += (f" | {r['stored_bytes']['estimated'] / 1024:13.1f} "
                     f"{r['stored_bytes']['measured'] / 1024:8.1f}")
        print(line, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="examples (default: all)")
    parser.add_argument("--full", nargs="*", default=[], help="run these as written")
    parser.add_argument("--store", action="store_true", help="measure SQLite store growth")
    parser.add_argument("--json", type=Path, help="write the rows as JSON")
    args = parser.parse_args()
    names = args.names or sorted(SHRUNK)
    rate = matmul_gflops()
    rows = []
    for name, full in [(n, False) for n in names] + [(n, True) for n in args.full]:
        start = time.perf_counter()
        rows.append(run_one(name, full, args.store, rate))
        print(f"  {name}{' (full)' if full else ''}: {time.perf_counter() - start:.1f} s",
              file=sys.stderr, flush=True)
    print_table(rows, rate)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"matmul_gflops": rate, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()

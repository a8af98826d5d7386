"""Admission benchmark through real HTTP: the API (uvicorn, `service.main:app`) in a process of
its own on a migrated SQLite store, so its resident memory (VmRSS, and the peak VmHWM) can be
read from /proc. Measures, interleaved in rounds (median of --rounds):

- a 2.8 KB sweep request whose grid has 10^8 points → 413 (refused from the grid's shape);
- a dry-run estimate of one spec, a 4-member and a 256-member sweep (each member priced);
- the submit of one spec (202) for scale;

then the API's peak memory before and after the 10^8-point requests, and one dry run per
example spec (the estimate, and whether the default limits of the cpu queue admit it).

    .venv/bin/python benchmarks/admission_bench.py --json benchmarks/results/admission.json

Not a test: this prints tables.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import httpx  # noqa: E402

from devtools.poll import poll  # noqa: E402
from lab.store.migrate import upgrade  # noqa: E402

SMALL = {"data": {"kind": "multi_cluster", "d": 20, "k": 4, "n_train": 64, "n_test": 32},
         "learner": {"kind": "two_layer_relu", "width": 8},
         "training": {"epochs": 5}, "evaluation": {"every": 1}}
AXES = ["learner.width", "data.d", "data.k", "data.n_train", "data.n_test", "training.epochs",
        "evaluation.every", "data.sigma"]
HUGE_GRID = {"name": "a 10^8-point grid", "base": SMALL,
             "grid": {axis: list(range(2, 12)) for axis in AXES}}


def proc_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def start_api(home: Path) -> tuple[subprocess.Popen, str]:
    """The API in a process of its own; its log (one line per request) goes to home/api.log."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "ADVLAB_HOME": str(home), "ADVLAB_BROKER_URL": "filesystem://",
           "ADVLAB_LOG_FORMAT": "text", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "service.main:app", "--port",
                             str(port), "--log-level", "warning", "--no-access-log"],
                            cwd=REPO, env=env, stderr=(home / "api.log").open("w"))
    base = f"http://127.0.0.1:{port}"
    try:
        poll(lambda: httpx.get(f"{base}/v1/health", timeout=2).status_code == 200, timeout=60,
             ignore=httpx.HTTPError)
    except TimeoutError:
        proc.kill()
        raise RuntimeError("the API did not start") from None
    return proc, base


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        upgrade("head", f"sqlite:///{home / 'advlab.db'}")
        proc, base = start_api(home)
        try:
            results = run(base, proc.pid, args.rounds)
        finally:
            proc.terminate()
            proc.wait(10)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))


def run(base: str, pid: int, rounds: int) -> dict:
    client = httpx.Client(base_url=base, timeout=120)
    sweep4 = {"base": SMALL, "grid": {"learner.width": [4, 8]}, "seeds": [0, 1],
              "seed_mode": "separate"}
    sweep256 = {"base": SMALL, "grid": {"learner.width": list(range(2, 66)),
                                        "data.sigma": [0.5, 1.0]},
                "seeds": [0, 1], "seed_mode": "separate"}
    cases = {
        "10^8-point grid -> 413": ("/v1/sweeps", HUGE_GRID, 413),
        "dry run: one spec": ("/v1/experiments?dry_run=true", SMALL, 200),
        "dry run: 4-member sweep": ("/v1/sweeps?dry_run=true", sweep4, 200),
        "dry run: 256-member sweep": ("/v1/sweeps?dry_run=true", sweep256, 200),
        "submit: one spec (202)": ("/v1/experiments", SMALL, 202),
    }
    for path, body, status in cases.values():  # warm-up (imports, first estimate)
        assert client.post(path, json=body).status_code == status
    hwm_before = proc_kb(pid, "VmHWM")
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(rounds):
        for name, (path, body, status) in cases.items():
            start = time.perf_counter()
            r = client.post(path, json=body)
            times[name].append((time.perf_counter() - start) * 1000)
            assert r.status_code == status, r.text[:300]
    hwm_after = proc_kb(pid, "VmHWM")
    rows = [{"request": name, "body_bytes": len(json.dumps(cases[name][1])),
             "status": cases[name][2], "median_ms": statistics.median(ms),
             "max_ms": max(ms), "rounds": len(ms)} for name, ms in times.items()]
    print(f"{'request':32s} {'body':>7s} {'status':>6s} {'median ms':>10s} {'max ms':>8s}")
    for r in rows:
        print(f"{r['request']:32s} {r['body_bytes']:7d} {r['status']:6d} "
              f"{r['median_ms']:10.1f} {r['max_ms']:8.1f}")
    memory = {"peak_rss_mb_before": hwm_before / 1024, "peak_rss_mb_after": hwm_after / 1024,
              "rss_mb_after": proc_kb(pid, "VmRSS") / 1024}
    print(f"\nAPI peak RSS: {memory['peak_rss_mb_before']:.1f} MB after warm-up, "
          f"{memory['peak_rss_mb_after']:.1f} MB after {rounds} rounds "
          f"(incl. {rounds} 10^8-point grids)\n")

    examples = []
    print(f"{'example':36s} {'GFLOP':>12s} {'peak GB':>8s} {'stored MB':>9s} {'answer':>7s}  "
          "driven by")
    for path in sorted((REPO / "examples").glob("*.json")):
        r = client.post("/v1/experiments?dry_run=true", json=json.loads(path.read_text()))
        if r.status_code == 200:
            est = r.json()
            row = {"example": path.stem, "status": 200, "gflop": est["gflop"],
                   "peak_gb": est["peak_bytes"] / 1e9, "stored_mb": est["stored_bytes"] / 1e6,
                   "driven_by": est["dominant"]["flops"]}
        else:
            items = r.json()["detail"]
            got = {i["quantity"]: i for i in items if isinstance(i, dict) and "quantity" in i}
            row = {"example": path.stem, "status": r.status_code,
                   "gflop": got["flops"]["estimate"] / 1e9 if "flops" in got else None,
                   "peak_gb": got["peak_bytes"]["estimate"] / 1e9 if "peak_bytes" in got else None,
                   "stored_mb": None, "driven_by": items[0].get("path") or items[0]["msg"][:40],
                   "refused": [i.get("type") for i in items]}
        examples.append(row)

        def num(v, spec):
            return format(v, spec) if v is not None else "-"
        print(f"{row['example']:36s} {num(row['gflop'], '12.1f')} {num(row['peak_gb'], '8.3f')} "
              f"{num(row['stored_mb'], '9.2f')} {row['status']:7d}  {row['driven_by']}")
    return {"requests": rows, "memory": memory, "examples": examples}


if __name__ == "__main__":
    main()

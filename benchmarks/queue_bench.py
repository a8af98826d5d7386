"""Queue wall time with 1 vs 2 workers: `advlab serve --workers N`, N jobs of an example spec.

Each run starts a fresh `advlab serve` (own ADVLAB_HOME, free port), waits until every worker
is ready (its forkserver has torch imported), submits the jobs over HTTP and measures the wall
time from the first submit until the last job has succeeded, read off the store's own stamps
(first `created_at` to last `finished_at`), so the client's polling adds nothing (its own wall,
polled every 50 ms, is kept as `client_wall_s`). Configurations alternate inside each round
(1, 2, then 2, 1, ...), so a change of machine load hits both; the speed-up is
T(1 worker) / T(2 workers) per round, and the table reports its median over the rounds.
`--unplaced` adds a run of 2 workers that each use every core (ADVLAB_TORCH_THREADS = cores):
what happened before jobs got cores / workers threads. Also prints the machine's load average.

    python benchmarks/queue_bench.py --rounds 3 --json runs/queue_bench.json
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import httpx  # noqa: E402

from devtools.poll import poll  # noqa: E402
from devtools.stack import free_port  # noqa: E402
from lab.status import TERMINAL  # noqa: E402


def run_queue(spec: dict, jobs: int, workers: int, extra_env: dict[str, str]) -> dict:
    """One `advlab serve --workers N` with `jobs` copies of `spec` (seeds 0..jobs-1)."""
    home = Path(tempfile.mkdtemp(prefix="queue-bench-"))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ADVLAB_")}
    env.update({"ADVLAB_HOME": str(home), "ADVLAB_DEVICE": "cpu", "ADVLAB_LOG_FORMAT": "text",
                "PYTHONUNBUFFERED": "1", **extra_env})
    log_path = home / "serve.log"
    with open(log_path, "wb") as log:
        serve = subprocess.Popen(
            [sys.executable, "-m", "client.cli", "serve", "--port", str(port),
             "--workers", str(workers)], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:

        def ready() -> bool:  # the API answers and every worker said "ready."
            if serve.poll() is not None:
                raise RuntimeError("advlab serve exited:\n" + log_path.read_text()[-3000:])
            return (log_path.read_text(errors="replace").count(" ready.") >= workers
                    and httpx.get(url + "/v1/health", timeout=2).status_code == 200)

        poll(ready, timeout=600, every=0.5, ignore=httpx.HTTPError)
        load_before = os.getloadavg()[0]
        started = time.monotonic()
        with httpx.Client(base_url=url, timeout=60) as client:
            ids = []
            for seed in range(jobs):
                response = client.post("/v1/experiments", json={**spec, "seed": seed})
                response.raise_for_status()
                ids.append(response.json()["id"])
            bodies: dict[str, dict] = {}
            while len(bodies) < jobs:
                for experiment_id in ids:
                    if experiment_id not in bodies:
                        body = client.get(f"/v1/experiments/{experiment_id}").json()
                        if body["status"] in TERMINAL:
                            bodies[experiment_id] = body
                time.sleep(0.05)  # the client wall resolves to 50 ms
        client_wall = time.monotonic() - started
        failed = [b.get("error") for b in bodies.values() if b["status"] != "succeeded"]
        if failed:
            raise RuntimeError(f"jobs failed: {failed}")
        summaries = [b["summary"] for b in bodies.values()]
        stamps = [(datetime.fromisoformat(b["created_at"]),
                   datetime.fromisoformat(b["finished_at"])) for b in bodies.values()]
        wall = (max(f for _, f in stamps) - min(c for c, _ in stamps)).total_seconds()
        return {"workers": workers, "wall_s": wall, "client_wall_s": client_wall,
                "load_before": load_before,
                "load_after": os.getloadavg()[0],
                "job_s": [s["duration_s"] for s in summaries],
                "threads": sorted({s.get("threads") for s in summaries}),
                "env": extra_env}
    finally:
        serve.send_signal(signal.SIGINT)
        try:
            serve.wait(timeout=60)
        except subprocess.TimeoutExpired:
            serve.kill()
            serve.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", default=str(REPO / "examples" / "feature_averaging_binary.json"))
    parser.add_argument("--jobs", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=None,
                        help="shorten each job to this many epochs (a loaded machine)")
    parser.add_argument("--unplaced", action="store_true",
                        help="also 2 workers with every core each (the behaviour before placement)")
    parser.add_argument("--json", type=Path, help="write the runs and the summary here")
    args = parser.parse_args()
    spec = json.loads(Path(args.spec).read_text())
    if args.epochs:
        spec["training"]["epochs"] = args.epochs
    cores = len(os.sched_getaffinity(0))
    configs = [("1 worker", 1, {}), ("2 workers", 2, {})]
    if args.unplaced:
        configs.append(("2 workers, all cores each", 2, {"ADVLAB_TORCH_THREADS": str(cores)}))

    runs: list[dict] = []
    for r in range(args.rounds):
        order = configs if r % 2 == 0 else list(reversed(configs))
        for label, workers, env in order:
            result = run_queue(spec, args.jobs, workers, env)
            result.update(label=label, round=r)
            runs.append(result)
            print(f"round {r} {label:<28} {result['wall_s']:7.1f} s  threads {result['threads']}  "
                  f"load {result['load_before']:.1f}->{result['load_after']:.1f}", flush=True)

    def walls(label: str) -> list[float]:
        return [x["wall_s"] for x in sorted(runs, key=lambda x: x["round"]) if x["label"] == label]

    one = walls("1 worker")
    rows = []
    print(f"\n{args.jobs} jobs of {Path(args.spec).name} ({spec['training']['epochs']} epochs), "
          f"{cores} cores, {args.rounds} rounds")
    print(f"{'configuration':<28} {'median wall s':>13} {'speed-up vs 1 worker (median of rounds)':>40}")
    for label, _, _ in configs:
        mine = walls(label)
        ratios = [a / b for a, b in zip(one, mine)]
        rows.append({"label": label, "median_wall_s": statistics.median(mine),
                     "walls": mine, "speedup_median": statistics.median(ratios),
                     "speedups": ratios})
        print(f"{label:<28} {statistics.median(mine):>13.1f} {statistics.median(ratios):>39.2f}x")
    loads = [x["load_before"] for x in runs]
    print(f"load average (1 min) before runs: min {min(loads):.1f}, median "
          f"{statistics.median(loads):.1f}, max {max(loads):.1f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"cores": cores, "jobs": args.jobs, "spec": args.spec,
                                         "runs": runs, "summary": rows}, indent=2))


if __name__ == "__main__":
    main()

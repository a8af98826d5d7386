"""Wall time of an example spec before/after a code change, and evaluation's share of it.

    .venv/bin/python benchmarks/schedule_bench.py [--spec examples/feature_averaging_binary.json]
        [--before REV] [--rounds 3] [--threads 1] [--json PATH]

Each round runs the spec once with the code at REV (default: main's merge base with HEAD,
extracted with `git archive` into a temporary folder) and once with the working tree, in that
order, each in a fresh subprocess with the same thread count; the table gives the median time
of each side and the median over rounds of each round's before/after ratio, so load drifts on
a shared machine hit both sides of a ratio alike. Evaluation time is the time spent inside
`Evaluator.__call__` (records, attacks, correlations), as wall and as process CPU time (with one
thread, CPU time is the work done, whatever else loads the machine); the accuracies both sides
record at the last epoch (clean, fine and robust, every seed) are compared number by number.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

DRIVER = r"""
import json, sys, time
import torch
torch.set_num_threads(int(sys.argv[2]))
import advcore.evaluate as ev
from advcore.observe import CollectingObserver
from advcore.run import run_experiment
from advcore.spec import parse_spec
spent = [0.0, 0.0]
inner = ev.Evaluator.__call__
def timed(self, step):
    t, c = time.perf_counter(), time.process_time()
    inner(self, step)
    spent[0] += time.perf_counter() - t
    spent[1] += time.process_time() - c
ev.Evaluator.__call__ = timed
spec = parse_spec(open(sys.argv[1]).read()).resolve()
observer = CollectingObserver()
t, c = time.perf_counter(), time.process_time()
run_experiment(spec, observer, device="cpu")
total, cpu = time.perf_counter() - t, time.process_time() - c
last = spec.training.epochs
final = sorted((r.name, r.seed, r.value) for r in observer.metrics
               if r.step == last and "accuracy" in r.name)
print(json.dumps({"total_s": total, "evaluation_s": spent[0], "total_cpu_s": cpu,
                  "evaluation_cpu_s": spent[1], "final": final}))
"""


def extract(rev: str, into: Path) -> Path:
    """The advcore package at git revision `rev`, unpacked under `into`."""
    archive = into / "before.tar"
    with open(archive, "wb") as fh:
        subprocess.run(["git", "archive", rev, "advcore"], cwd=ROOT, stdout=fh, check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(into / "before", filter="data")
    return into / "before"


def run_once(path: Path, spec: str, threads: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(path)}
    out = subprocess.run([sys.executable, "-c", DRIVER, spec, str(threads)], env=env, cwd=path,
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", default=str(ROOT / "examples/feature_averaging_binary.json"))
    parser.add_argument("--after-spec", default=None,
                        help="spec for the 'after' side (default: --spec), e.g. a new schedule")
    parser.add_argument("--before", default=None, help="git revision (default: merge-base main)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args()
    rev = args.before or subprocess.run(["git", "merge-base", "HEAD", "main"], cwd=ROOT,
                                        capture_output=True, text=True,
                                        check=True).stdout.strip()
    spec = str(Path(args.spec).resolve())
    after_spec = str(Path(args.after_spec or args.spec).resolve())
    rows: dict[str, list[dict]] = {"before": [], "after": []}
    with tempfile.TemporaryDirectory() as tmp:
        before = extract(rev, Path(tmp))
        for _ in range(args.rounds):  # interleaved
            rows["before"].append(run_once(before, spec, args.threads))
            rows["after"].append(run_once(ROOT, after_spec, args.threads))
    keys = ("total_s", "evaluation_s", "total_cpu_s", "evaluation_cpu_s")
    med = {side: {k: statistics.median(r[k] for r in runs) for k in keys}
           for side, runs in rows.items()}
    ratio = statistics.median(b["total_s"] / a["total_s"]
                              for b, a in zip(rows["before"], rows["after"]))
    cpu_ratio = statistics.median(b["total_cpu_s"] / a["total_cpu_s"]
                                  for b, a in zip(rows["before"], rows["after"]))
    same = rows["before"][-1]["final"] == rows["after"][-1]["final"]
    load = os.getloadavg()
    print(f"{Path(spec).name} (after: {Path(after_spec).name}), before = {rev[:10]}, "
          f"{args.threads} thread(s), {args.rounds} interleaved rounds, "
          f"load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}")
    print(f"{'side':8s} {'wall s':>8s} {'eval s':>8s} {'share':>6s} {'CPU s':>8s} "
          f"{'eval CPU s':>10s} {'share':>6s}")
    for side, m in med.items():
        print(f"{side:8s} {m['total_s']:8.2f} {m['evaluation_s']:8.2f} "
              f"{m['evaluation_s'] / m['total_s']:6.1%} {m['total_cpu_s']:8.2f} "
              f"{m['evaluation_cpu_s']:10.2f} {m['evaluation_cpu_s'] / m['total_cpu_s']:6.1%}")
    print(f"speed-up before/after (median of per-round ratios): wall {ratio:.2f}x, "
          f"CPU time {cpu_ratio:.2f}x; accuracies at the last epoch identical: {same}")
    if not same:
        for side in rows:
            print(side, json.dumps(rows[side][-1]["final"]))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"before_rev": rev, "spec": spec, "after_spec": after_spec,
                       "threads": args.threads, "load_average": load, "rounds": rows,
                       "median": med, "speedup": ratio, "cpu_speedup": cpu_ratio,
                       "final_identical": same}, fh, indent=2)


if __name__ == "__main__":
    main()

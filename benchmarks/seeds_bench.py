"""S batched seeds vs S sequential runs: training and robust-accuracy time at 1 thread and at all
threads (CPU), or on a CUDA device.

    .venv/bin/python benchmarks/seeds_bench.py [--small] [--seeds 16] [--rounds 3]
        [--device cpu|cuda] [--json PATH]

Each side trains the same two-layer ReLU nets (advcore's learner and training loop, full-batch
GD, `separated` data) and attacks them with advcore's PGD at 4 radii; the batched side is one
run with S seeds, the sequential side S one-seed runs of the same seeds. Rounds interleave the
two sides; the ratio is sequential/batched per round, then the median over rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import torch

from advcore.attacks import robust_accuracy
from advcore.data import build_data, stack_seeds
from advcore.learners import build_learner
from advcore.observe import NullObserver
from advcore.spec import AttackSpec, ExperimentSpec
from advcore.train import make_task, train


def setup(seeds: list[int], d: int, m: int, n: int, epochs: int, device: str):
    spec = ExperimentSpec.model_validate({
        "seeds": seeds, "device": device,
        "data": {"kind": "separated", "d": d, "n_train": n, "n_test": n, "eps": 0.001},
        "learner": {"kind": "two_layer_relu", "width": m},
        "training": {"optimizer": {"kind": "gd", "lr": 0.5}, "epochs": epochs},
        "evaluation": {"every": epochs, "record": []},
    }).resolve()
    data = stack_seeds([build_data(spec.data, s, torch.device(device)) for s in seeds])
    task = make_task(spec, data)
    model = build_learner(spec, data.in_shape, task.n_outputs, seeds, torch.device(device))
    return spec, data, task, model


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def one_side(runs, attack, device: str) -> tuple[float, float]:
    """(train seconds, attack seconds) over `runs` (each a setup tuple)."""
    sync(device)
    start = time.perf_counter()
    for spec, data, task, model in runs:
        train(spec, model, data, task, NullObserver(), lambda step: None)
    sync(device)
    mid = time.perf_counter()
    for spec, data, task, model in runs:
        robust_accuracy(model, data.x_test, data.y_test, attack, feature_ndim=1,
                        generator=torch.Generator(device=device).manual_seed(0))
    sync(device)
    return mid - start, time.perf_counter() - mid


def measure(args, threads: int | None) -> dict:
    if threads:
        torch.set_num_threads(threads)
    seeds = list(range(args.seeds))
    attack = AttackSpec(kind="pgd", norm="linf", steps=10, radii=[0.0, 0.002, 0.004, 0.008])
    batched = [setup(seeds, args.d, args.d, args.n, args.epochs, args.device)]
    sequential = [setup([s], args.d, args.d, args.n, args.epochs, args.device) for s in seeds]
    if args.device == "cuda":  # warm-up
        one_side(batched, attack, args.device)
        one_side(sequential[:1], attack, args.device)
    rounds = []
    for _ in range(args.rounds):
        b = one_side(batched, attack, args.device)
        s = one_side(sequential, attack, args.device)
        rounds.append({"batched_train_s": b[0], "batched_attack_s": b[1],
                       "sequential_train_s": s[0], "sequential_attack_s": s[1]})
    med = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
    return {"threads": torch.get_num_threads(), "device": args.device, "rounds": rounds,
            "median": med,
            "train_speedup": statistics.median(r["sequential_train_s"] / r["batched_train_s"]
                                               for r in rounds),
            "attack_speedup": statistics.median(r["sequential_attack_s"] / r["batched_attack_s"]
                                                for r in rounds)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="d = m = 100, N = 500")
    parser.add_argument("--seeds", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args()
    args.d, args.n = (100, 500) if args.small else (200, 1000)
    settings = [None] if args.device == "cuda" else [1, os.cpu_count()]
    rows = [measure(args, t) for t in settings]
    load = os.getloadavg()
    print(f"S = {args.seeds} seeds, d = m = {args.d}, N = {args.n}, {args.epochs} GD epochs + PGD-10 "
          f"at 4 radii, {args.rounds} interleaved rounds on {args.device}; load average "
          f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}")
    print(f"{'threads':>7s} {'train b s':>9s} {'train seq s':>11s} {'x':>5s} "
          f"{'attack b s':>10s} {'attack seq s':>12s} {'x':>5s}")
    for r in rows:
        m = r["median"]
        print(f"{r['threads']:7d} {m['batched_train_s']:9.2f} {m['sequential_train_s']:11.2f} "
              f"{r['train_speedup']:5.2f} {m['batched_attack_s']:10.2f} "
              f"{m['sequential_attack_s']:12.2f} {r['attack_speedup']:5.2f}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"seeds": args.seeds, "d": args.d, "n": args.n, "epochs": args.epochs,
                       "load_average": load, "rows": rows}, fh, indent=2)


if __name__ == "__main__":
    main()

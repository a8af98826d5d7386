"""Eager vs `torch.compile` (advcore.compiled) for the training step and the PGD step.

    .venv/bin/python benchmarks/compile_bench.py [--small] [--rounds 3] [--device cpu|cuda]
        [--json PATH]

The two-layer ReLU learner (advcore.learners, S seeds batched) on `separated` data: a
full-batch GD training step (advcore.train.train, one epoch) and PGD-10 (advcore.attacks.perturb,
l-inf, every example to the last step). The compiled model is built, then warmed up once (the
compile time is reported separately); rounds interleave eager and compiled, and the ratio is
eager/compiled per round, then the median.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import torch

from advcore.attacks import perturb
from advcore.compiled import compile_forward
from advcore.data import build_data, stack_seeds
from advcore.learners import build_learner
from advcore.observe import NullObserver
from advcore.spec import AttackSpec, ExperimentSpec
from advcore.train import make_task, train


def setup(d: int, n: int, seeds: list[int], device: str, compiled: bool):
    spec = ExperimentSpec.model_validate({
        "seeds": seeds, "device": device,
        "data": {"kind": "separated", "d": d, "n_train": n, "n_test": n, "eps": 0.001},
        "learner": {"kind": "two_layer_relu", "width": d},
        "training": {"optimizer": {"kind": "gd", "lr": 0.5}, "epochs": 1},
        "evaluation": {"every": 1, "record": []},
    }).resolve()
    data = stack_seeds([build_data(spec.data, s, torch.device(device)) for s in seeds])
    task = make_task(spec, data)
    model = build_learner(spec, data.in_shape, task.n_outputs, seeds, torch.device(device))
    if compiled:
        compile_forward(model)
    return spec, data, task, model


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def timed(fn, device: str) -> float:
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="d = m = 200, N = 2000")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args()
    d, n = (200, 2000) if args.small else (1000, 10_000)
    attack = AttackSpec(kind="pgd", norm="linf", radii=[0.004], steps=10)
    sides = {}
    compile_s = {}
    for name in ("eager", "compiled"):
        spec, data, task, model = setup(d, n, [0], args.device, name == "compiled")

        def step(spec=spec, data=data, task=task, model=model):
            train(spec, model, data, task, NullObserver(), lambda epoch: None)

        def pgd(data=data, model=model):
            perturb(model, data.x_test, data.y_test, attack, 0.004, feature_ndim=1,
                    generator=torch.Generator(device=args.device).manual_seed(0))

        compile_s[name] = timed(step, args.device) + timed(pgd, args.device)  # warm-up
        sides[name] = {"train step": step, "PGD-10": pgd}
    times = {(s, w): [] for s in sides for w in ("train step", "PGD-10")}
    for _ in range(args.rounds):
        for work in ("train step", "PGD-10"):
            for side in sides:
                times[(side, work)].append(timed(sides[side][work], args.device))
    load = os.getloadavg()
    print(f"two-layer ReLU d = m = {d}, N = {n} on {args.device}, {torch.get_num_threads()} "
          f"threads, {args.rounds} interleaved rounds; load average {load[0]:.1f}; first call "
          f"(incl. compilation): eager {compile_s['eager']:.1f} s, compiled "
          f"{compile_s['compiled']:.1f} s")
    rows = []
    for work in ("train step", "PGD-10"):
        eager, comp = times[("eager", work)], times[("compiled", work)]
        ratio = statistics.median(e / c for e, c in zip(eager, comp))
        rows.append({"work": work, "eager_s": statistics.median(eager),
                     "compiled_s": statistics.median(comp), "speedup": ratio})
        print(f"{work:10s} eager {statistics.median(eager):7.3f} s  compiled "
              f"{statistics.median(comp):7.3f} s  eager/compiled {ratio:5.2f}x")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"device": args.device, "d": d, "n": n, "load_average": load,
                       "first_call_s": compile_s, "rows": rows}, fh, indent=2)


if __name__ == "__main__":
    main()

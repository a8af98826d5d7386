"""Training throughput of advcore: GD steps/s of the two-layer ReLU net, and S batched seeds vs
S sequential runs. Prints a table; `--json PATH` also writes the rows. Not part of the tests.

    python benchmarks/train_bench.py [--device cpu|cuda] [--quick] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from advcore.data import build_data, stack_seeds
from advcore.device import pick_device
from advcore.learners import build_learner
from advcore.spec import parse_spec
from advcore.train import make_optimizer, per_seed_loss


def _setup(d: int, m: int, n: int, seeds: list[int], device):
    spec = parse_spec({"data": {"kind": "multi_cluster", "d": d, "k": 10, "n_train": n, "n_test": 10},
                       "learner": {"kind": "two_layer_relu", "width": m},
                       "training": {"optimizer": {"kind": "gd", "lr": 0.01}}}).resolve()
    data = stack_seeds([build_data(spec.data, s, device) for s in seeds])
    model = build_learner(spec, (d,), 1, seeds, device)
    return model, make_optimizer(model.parameters(), spec.training.optimizer), data


def _sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def gd_steps_per_s(d: int, m: int, n: int, seeds: list[int], steps: int, device) -> float:
    model, opt, data = _setup(d, m, n, seeds, device)
    for i in range(steps + 2):  # two warm-up steps
        if i == 2:
            _sync(device)
            start = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        per_seed_loss(model(data.x_train), data.y_train).sum().backward()
        opt.step()
    _sync(device)
    return steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default=None)
    parser.add_argument("--quick", action="store_true", help="small sizes only")
    parser.add_argument("--json", dest="json_path", default=None)
    args = parser.parse_args()
    device = pick_device(args.device)
    cases = [(200, 64, 2000)] if args.quick else [(200, 64, 2000), (1000, 1000, 10_000)]
    rows = []
    for d, m, n in cases:
        steps = 20
        one = gd_steps_per_s(d, m, n, [0], steps, device)
        flops = 6 * n * m * d  # forward + backward matmuls of the first layer
        rows.append({"case": f"d={d} m={m} N={n}", "seeds": 1, "steps_per_s": one,
                     "gflops": one * flops / 1e9})
        s = 16 if not args.quick else 4
        batched = gd_steps_per_s(d, m, n, list(range(s)), max(2, steps // s), device)
        rows.append({"case": f"d={d} m={m} N={n}", "seeds": s, "steps_per_s": batched,
                     "gflops": batched * s * flops / 1e9,
                     "batched_vs_sequential": batched * s / one})
    print(f"{'case':<26}{'seeds':>6}{'steps/s':>10}{'GFLOP/s':>10}{'batch/seq':>11}   ({device})")
    for r in rows:
        ratio = f"{r['batched_vs_sequential']:.2f}x" if "batched_vs_sequential" in r else ""
        print(f"{r['case']:<26}{r['seeds']:>6}{r['steps_per_s']:>10.2f}{r['gflops']:>10.2f}{ratio:>11}")
    if args.json_path:
        with open(args.json_path, "w") as f:
            json.dump({"device": device.type, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()

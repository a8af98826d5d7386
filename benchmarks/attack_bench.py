"""Attack cost: `autoattack` (APGD-CE, then APGD-T / the margin from the data's directions on the
points still robust) and APGD-CE vs PGD-20, on the same model, points and radii.

    .venv/bin/python benchmarks/attack_bench.py [--small] [--json PATH] [--threads T]

Cases: a digits MLP [96, 48] (10 classes, 8x8 images in [0, 1], l-inf, box) and a
feature-averaging two-layer ReLU net (multi_cluster, binary labels, l2) with d = m = 1000. Each
attack is one `robust_accuracy` call over all radii; the attacks are timed interleaved (PGD,
APGD-CE, autoattack, PGD, ...) `--repeat` times in one process; the table gives the median time
and the median over rounds of each round's ratio to that round's PGD-20, so a loaded machine
slows both sides of a ratio alike. autoattack's cost depends on how many points survive
APGD-CE (it attacks only those with APGD-T), so the table shows robust accuracy next to the time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from advcore.attacks import robust_accuracy
from advcore.data import build_data, stack_seeds
from advcore.learners import build_learner
from advcore.observe import NullObserver
from advcore.spec import AttackSpec, parse_spec
from advcore.train import attack_kwargs, main_view, make_task, train

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._torch import parse_torch_args  # noqa: E402
from devtools.fit import fit_frozen  # noqa: E402


@dataclass
class Problem:
    name: str
    model: object  # callable x -> logits
    x: torch.Tensor
    y: torch.Tensor
    norm: str
    radii: list[float]
    kwargs: dict  # feature_ndim, box, direction / clusters for the data starts


def digits_problem(n_points: int) -> Problem:
    from sklearn.datasets import load_digits

    torch.manual_seed(0)
    data = load_digits()
    x = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1) / 16.0  # (1797, 1, 8, 8)
    y = torch.tensor(data.target, dtype=torch.long)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 96), nn.ReLU(), nn.Linear(96, 48),
                          nn.ReLU(), nn.Linear(48, 10))
    fit_frozen(model, x[:1200], y[:1200], steps=150, lr=1e-2)
    return Problem("digits MLP [96,48]", model, x[1200:1200 + n_points],
                   y[1200:1200 + n_points], "linf", [0.05, 0.1, 0.15, 0.2], {"feature_ndim": 3})


def two_layer_problem(d: int, n_points: int, epochs: int) -> Problem:
    spec = parse_spec({
        "seed": 0, "device": "cpu",
        "data": {"kind": "multi_cluster", "d": d, "k": 10, "n_train": 1000, "n_test": n_points},
        "learner": {"kind": "two_layer_relu", "width": d, "init_scale": 0.1},
        "training": {"epochs": epochs, "optimizer": {"kind": "gd", "lr": 0.05}},
        "evaluation": {"record": []},
    }).resolve()
    data = stack_seeds([build_data(spec.data, 0)])
    task = make_task(spec, data)
    model = build_learner(spec, data.in_shape, task.n_outputs, [0], "cpu")
    train(spec, model, data, task, NullObserver(), lambda epoch: None)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    fn, y = main_view(model, task, data.y_test)
    scale = (d / 10) ** 0.5  # sqrt(d/k): the averaged solution's margin
    kwargs = attack_kwargs(AttackSpec(kind="autoattack"), data)
    return Problem(f"two-layer d=m={d}", fn, data.x_test, y, "l2",
                   [0.5 * scale, scale, 1.5 * scale], kwargs)


def attacks(p: Problem) -> dict[str, AttackSpec]:
    box = [0.0, 1.0] if p.kwargs["feature_ndim"] == 3 else None
    common = {"norm": p.norm, "radii": p.radii, "box": box}
    return {"pgd-20": AttackSpec(kind="pgd", steps=20, **common),
            "apgd-ce": AttackSpec(kind="apgd", **common),
            "autoattack": AttackSpec(kind="autoattack", **common)}


def bench(p: Problem, repeat: int) -> list[dict]:
    specs = attacks(p)
    times: dict[str, list[float]] = {name: [] for name in specs}
    accuracy: dict[str, list[float]] = {}
    for _ in range(repeat):  # interleaved: one round of every attack at a time
        for name, spec in specs.items():
            gen = torch.Generator().manual_seed(0)
            start = time.perf_counter()
            res = robust_accuracy(p.model, p.x, p.y, spec, generator=gen, **p.kwargs)
            times[name].append(time.perf_counter() - start)
            accuracy[name] = [round(float(a), 4) for a in res.accuracy.flatten()]
    base = times["pgd-20"]
    return [{"case": p.name, "attack": name, "points": int(p.y.shape[-1]),
             "radii": p.radii, "median_s": statistics.median(t), "runs_s": t,
             # per round, against the PGD-20 run of the same round: robust to load drifts
             "ratio_vs_pgd20": statistics.median(a / b for a, b in zip(t, base)),
             "robust_accuracy": accuracy[name]}
            for name, t in times.items()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true",
                        help="quick sizes (200 points, d=m=200) instead of 500 / d=m=1000")
    parser.add_argument("--repeat", type=int, default=3, help="interleaved rounds (median)")
    args = parse_torch_args(parser)
    n_points, d = (200, 200) if args.small else (500, 1000)
    problems = [digits_problem(n_points), two_layer_problem(d, n_points, 100)]
    rows = [row for p in problems for row in bench(p, args.repeat)]
    print(f"{'case':22s} {'attack':11s} {'median s':>9s} {'x PGD-20':>9s}  robust accuracy per radius")
    for r in rows:
        acc = " ".join(f"{a:.3f}" for a in r["robust_accuracy"])
        print(f"{r['case']:22s} {r['attack']:11s} {r['median_s']:9.2f} "
              f"{r['ratio_vs_pgd20']:9.1f}  {acc}")
    if args.json:
        meta = {"threads": torch.get_num_threads(), "cpus": os.cpu_count(),
                "torch": torch.__version__, "python": platform.python_version(),
                "repeat": args.repeat, "small": args.small}
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()

"""advcore speed: training steps/s, PGD throughput, GFLOP/s vs a measured matmul peak, PGD vs
torchattacks (speed and robust accuracy on the same model and [0,1] data), and S=16 batched seeds
vs 16 sequential runs.

    .venv/bin/python benchmarks/advcore_bench.py [--small] [--json PATH] [--threads T]

Models are advcore's own: data from advcore.data (`separated`: binary data in [0,1]^d), the
two-layer ReLU learner from advcore.learners and the training loop advcore.train.train (full-batch
GD, no evaluation). FLOP counts: a training step is ~4*S*N*d*m (forward + weight gradient; the
input needs no gradient); a PGD step is ~4*N*d*m (forward + input gradient). The second layer
and elementwise work are ignored, so GFLOP/s are slight underestimates.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from advcore.attacks import perturb, robust_accuracy
from advcore.data import build_data, stack_seeds
from advcore.learners import build_learner
from advcore.observe import NullObserver
from advcore.spec import AttackSpec, ExperimentSpec
from advcore.train import make_task, train

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._torch import parse_torch_args  # noqa: E402


@dataclass
class Case:
    name: str
    d: int  # input dimension
    m: int  # hidden width
    n: int  # training (and attacked test) points
    epochs: int  # timed GD steps
    pgd_steps: int
    linf: float  # l_inf attack radius on [0,1]^d data (the data's separation eps is below it)
    seeds_n: int  # N used for the S=16 batched-vs-sequential comparison


CASES = {
    "small": Case("small", d=100, m=100, n=1000, epochs=20, pgd_steps=20, linf=0.02, seeds_n=1000),
    "large": Case("large", d=1000, m=1000, n=10_000, epochs=3, pgd_steps=10, linf=0.004,
                  seeds_n=1000),
}


def best_time(fn, repeat: int, warmup: bool = True) -> float:
    """Minimum wall time of `repeat` calls (after one warm-up call unless told otherwise)."""
    if warmup:
        fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def matmul_peak(n: int = 2048, repeat: int = 5) -> float:
    """GFLOP/s of a float32 (n x n) @ (n x n) matmul: the machine's practical peak."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    return 2 * n**3 / best_time(lambda: a @ b, repeat) / 1e9


def make_spec(case: Case, seeds: list[int], n: int) -> ExperimentSpec:
    return ExperimentSpec.model_validate({
        "seeds": seeds, "device": "cpu",
        "data": {"kind": "separated", "d": case.d, "n_train": n, "n_test": n, "eps": 0.001},
        "learner": {"kind": "two_layer_relu", "width": case.m},
        "training": {"optimizer": {"kind": "gd", "lr": 0.5}, "epochs": case.epochs},
        "evaluation": {"every": case.epochs, "record": []},
    }).resolve()


def setup(case: Case, seeds: list[int], n: int):
    spec = make_spec(case, seeds, n)
    data = stack_seeds([build_data(spec.data, s) for s in seeds])
    task = make_task(spec, data)
    model = build_learner(spec, data.in_shape, task.n_outputs, seeds)
    return spec, data, task, model


def train_seconds(spec, data, task, model) -> float:
    """Wall time of advcore.train.train over spec.training.epochs full-batch GD steps."""
    start = time.perf_counter()
    train(spec, model, data, task, NullObserver(), lambda step: None)
    return time.perf_counter() - start


class TwoClassView(nn.Module):
    """A binary advcore model (S=1) as 2-class logits (-f/2, f/2) for torchattacks: CE on them
    is exactly the logistic loss of f, and the same callable is attacked by both libraries.
    Inputs are image-shaped (N, 1, 1, d) because torchattacks' PGDL2 assumes 4-d batches."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, 1, 1, d) -> (N, 2)
        f = self.model(x.flatten(1).unsqueeze(0))[0]
        return torch.stack([-f / 2, f / 2], dim=-1)


def compare_torchattacks(case: Case, view: nn.Module, x, y, rows: list, repeat: int,
                         warmup: bool) -> None:
    """Same model, data in [0,1], CE loss, no random start, same eps/alpha/steps: our PGD keeps
    each example's best iterate (one more forward and two `where`s per step), theirs the last."""
    import torchattacks

    for norm, eps in [("linf", case.linf), ("l2", case.linf * case.d**0.5 / 2)]:
        alpha = 2.5 * eps / case.pgd_steps
        spec = AttackSpec(kind="pgd", norm=norm, radii=[eps], steps=case.pgd_steps,
                          step_size=alpha, random_start=False, loss="ce", box=[0.0, 1.0])
        cls = torchattacks.PGD if norm == "linf" else torchattacks.PGDL2
        reference = cls(view, eps=eps, alpha=alpha, steps=case.pgd_steps, random_start=False)
        # interleaved, best of `repeat` each: a shared machine's load drifts between runs
        pairs = [(best_time(lambda: perturb(view, x, y, spec, eps, feature_ndim=3), 1, warmup),
                  best_time(lambda: reference(x, y), 1, warmup)) for _ in range(repeat)]
        t_ours, t_theirs = min(p[0] for p in pairs), min(p[1] for p in pairs)
        ours = float(robust_accuracy(view, x, y, spec, feature_ndim=3).accuracy[0])
        x_adv = reference(x, y)
        with torch.no_grad():
            theirs = float((view(x_adv).argmax(-1) == y).float().mean())
        label = f"pgd_{norm}@{eps:g}"
        rows += [
            (case.name, f"{label} advcore time", t_ours, "s"),
            (case.name, f"{label} torchattacks time", t_theirs, "s"),
            (case.name, f"{label} speed ratio advcore/torchattacks", t_theirs / t_ours, "x"),
            (case.name, f"{label} robust acc advcore", ours, "frac"),
            (case.name, f"{label} robust acc torchattacks", theirs, "frac"),
        ]


def bench_case(case: Case, peak: float, rows: list) -> None:
    small = case.name == "small"
    repeat, warmup = (3, True) if small else (1, False)  # the large case is long enough as is
    spec, data, task, model = setup(case, [0], case.n)
    seconds = best_time(lambda: train_seconds(spec, data, task, model), repeat, warmup)
    steps_s = case.epochs / seconds
    rows += [(case.name, "train steps/s (advcore.train, full-batch GD)", steps_s, "1/s"),
             (case.name, "train GFLOP/s", 4 * case.n * case.d * case.m * steps_s / 1e9, "GFLOP/s"),
             (case.name, "train % of matmul peak",
              100 * 4 * case.n * case.d * case.m * steps_s / 1e9 / peak, "%")]

    x, y = data.x_test, data.y_test  # (1, N, d) in [0,1]^d, y +-1
    attack = AttackSpec(kind="pgd", norm="linf", radii=[case.linf], steps=case.pgd_steps,
                        random_start=True)
    t = best_time(lambda: perturb(model, x, y, attack, case.linf, feature_ndim=1,
                                  generator=torch.Generator().manual_seed(0)), repeat, warmup)
    ex_steps = case.n * case.pgd_steps / t
    rows += [(case.name, "PGD examples*steps/s", ex_steps, "1/s"),
             (case.name, "PGD GFLOP/s", 4 * case.d * case.m * ex_steps / 1e9, "GFLOP/s"),
             (case.name, "PGD % of matmul peak", 100 * 4 * case.d * case.m * ex_steps / 1e9 / peak,
              "%")]
    radii = AttackSpec(kind="pgd", norm="linf", steps=case.pgd_steps,
                       radii=[0.0, case.linf / 2, case.linf, 2 * case.linf])
    t_all = best_time(lambda: robust_accuracy(model, x, y, radii, feature_ndim=1,
                                              generator=torch.Generator().manual_seed(0)),
                      repeat, warmup)
    rows.append((case.name, "robust_accuracy, 4 radii in one call (incl. checks)", t_all, "s"))

    view = TwoClassView(model)
    images = x[0].reshape(case.n, 1, 1, case.d)  # (N, 1, 1, d) in [0, 1]
    compare_torchattacks(case, view, images, (y[0] > 0).long(), rows, max(repeat, 2), warmup)

    # S = 16 seeds as one batched computation vs 16 runs one after the other (same N)
    n_s, seeds = case.seeds_n, list(range(16))
    batched = setup(case, seeds, n_s)
    singles = [setup(case, [s], n_s) for s in seeds]
    t_batched = best_time(lambda: train_seconds(*batched), 1, small)
    t_seq = best_time(lambda: sum(train_seconds(*single) for single in singles), 1, small)
    rows += [(case.name, f"S=16 batched train time (N={n_s})", t_batched, "s"),
             (case.name, f"16 sequential train time (N={n_s})", t_seq, "s"),
             (case.name, "train speed-up batched/sequential", t_seq / t_batched, "x")]

    def attack_all(model, data):
        return robust_accuracy(model, data.x_test, data.y_test, radii, feature_ndim=1)

    t_batched = best_time(lambda: attack_all(batched[3], batched[1]), 1, small)
    t_seq = best_time(lambda: [attack_all(single[3], single[1]) for single in singles], 1, small)
    rows += [(case.name, f"S=16 batched robust_accuracy time (N={n_s})", t_batched, "s"),
             (case.name, f"16 sequential robust_accuracy time (N={n_s})", t_seq, "s"),
             (case.name, "attack speed-up batched/sequential", t_seq / t_batched, "x")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="only the small case (quick)")
    parser.add_argument("--cases", nargs="+", choices=sorted(CASES), default=["small", "large"])
    args = parse_torch_args(parser)
    peak = matmul_peak()
    rows: list[tuple[str, str, float, str]] = [("machine", "matmul peak (2048^3 float32)", peak,
                                                "GFLOP/s")]
    for name in ["small"] if args.small else args.cases:
        bench_case(CASES[name], peak, rows)
    width = max(len(r[1]) for r in rows)
    load = os.getloadavg()[0]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads on {os.cpu_count()} cores "
          f"({platform.machine()}), load average {load:.1f} at the end")
    print(f"{'case':<8} {'quantity':<{width}} {'value':>12}  unit")
    for case, quantity, value, unit in rows:
        print(f"{case:<8} {quantity:<{width}} {value:>12.4g}  {unit}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"torch": torch.__version__, "threads": torch.get_num_threads(),
                       "cpu_count": os.cpu_count(), "load_average": load,
                       "rows": [dict(case=c, quantity=q, value=v, unit=u) for c, q, v, u in rows]},
                      fh, indent=2)


if __name__ == "__main__":
    main()

"""advcore PGD vs torchattacks PGD / PGDL2: time, robust accuracy and GFLOP/s on the same models,
data and attack settings.

    .venv/bin/python benchmarks/pgd_bench.py [--small] [--rounds 3] [--device cpu|cuda]
        [--threads T] [--json PATH]

Models (d = m = 1000, N = 10^4 test points in [0, 1]^d, 10 steps, l-inf and l2, CE loss, no
random start, box [0, 1], step 2.5 eps / steps): a 10-class MLP d-m-10 and a binary two-layer
ReLU net d-m-1 (read as 2-class logits (-f/2, f/2) so that CE is its logistic loss), both trained briefly on Gaussian clusters so robust accuracy is neither 0
nor 1. Per round, interleaved: torchattacks (attack + one forward to score), advcore
`robust_accuracy` (what an evaluation runs: early exit, the random-noise check and the masking
flags included), and advcore `perturb` + one forward (every example to the last step, as in
adversarial training). Ratios are per round, then the median over rounds. GFLOP/s count 2x the
forward FLOPs per example and step (forward + input gradient) over the full batch, against
the measured float32 matmul peak.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

from advcore.attacks import perturb, robust_accuracy
from advcore.spec import AttackSpec

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._torch import parse_torch_args  # noqa: E402
from devtools.fit import fit_frozen  # noqa: E402


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def timed(fn, device: str) -> tuple[float, object]:
    sync(device)
    start = time.perf_counter()
    out = fn()
    sync(device)
    return time.perf_counter() - start, out


def matmul_peak(device: str, n: int = 2048, repeat: int = 10) -> float:
    """GFLOP/s of a float32 (n x n) @ (n x n) matmul, best of `repeat` (a shared machine's load
    only lowers it: the best repeat is the closest to the hardware's)."""
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    a @ b
    return 2 * n**3 / min(timed(lambda: a @ b, device)[0] for _ in range(repeat)) / 1e9


def clusters(n: int, d: int, classes: int, seed: int, device: str):
    """n points in [0,1]^d around `classes` random corners of [0.3, 0.7]^d, labels 0..C-1."""
    g = torch.Generator().manual_seed(seed)
    means = 0.3 + 0.4 * (torch.rand(classes, d, generator=g) > 0.5).float()
    y = torch.randint(classes, (n,), generator=g)
    x = (means[y] + 0.25 * torch.randn(n, d, generator=g)).clamp(0, 1)
    return x.to(device), y.to(device)


class TwoClass(nn.Module):
    """A one-logit model f as 2-class logits (-f/2, f/2): CE on them is softplus(-y f)."""

    def __init__(self, f: nn.Module) -> None:
        super().__init__()
        self.f = f

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.f(x).squeeze(-1)
        return torch.stack([-z / 2, z / 2], dim=-1)


class Flat(nn.Module):
    """torchattacks' PGDL2 wants image-shaped batches: (N, 1, 1, d) in, the model on (N, d)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.flatten(1))


def trained(kind: str, d: int, m: int, n: int, device: str):
    """(model on (N,1,1,d) -> (N, C), x (N,1,1,d), y (N,), forward FLOPs per example)."""
    torch.manual_seed(0)
    classes = 10 if kind == "mlp" else 2
    x, y = clusters(n, d, classes, 1 if kind == "mlp" else 2, device)
    if kind == "mlp":
        net = nn.Sequential(nn.Linear(d, m), nn.ReLU(), nn.Linear(m, classes))
        flops = 2 * (d * m + m * classes)
    else:
        net = TwoClass(nn.Sequential(nn.Linear(d, m), nn.ReLU(), nn.Linear(m, 1)))
        flops = 2 * (d * m + m)
    net = net.to(device)
    # a brief fit on 2000 points: robust accuracy in (0, 1)
    fit_frozen(net, x[:2000], y[:2000], steps=30, lr=1e-3)
    return Flat(net), x.reshape(n, 1, 1, d), y, flops


def accuracy(model, x, y) -> float:
    with torch.no_grad():
        return float((model(x).argmax(-1) == y).float().mean())


def bench(kind: str, norm: str, eps: float, args, device: str, peak: float) -> dict:
    import torchattacks

    model, x, y, flops = trained(kind, args.d, args.d, args.n, device)
    alpha = 2.5 * eps / args.steps
    spec = AttackSpec(kind="pgd", norm=norm, radii=[eps], steps=args.steps, step_size=alpha,
                      random_start=False, loss="ce", box=[0.0, 1.0])
    cls = torchattacks.PGD if norm == "linf" else torchattacks.PGDL2
    reference = cls(model, eps=eps, alpha=alpha, steps=args.steps, random_start=False)
    sides = {
        "torchattacks": lambda: accuracy(model, reference(x, y), y),
        "advcore robust_accuracy": lambda: float(robust_accuracy(
            model, x, y, spec, feature_ndim=3).accuracy[0]),
        "advcore perturb": lambda: accuracy(model, perturb(model, x, y, spec, eps,
                                                           feature_ndim=3), y),
    }
    if device == "cuda":  # warm-up: kernels, allocator
        for fn in sides.values():
            fn()
    times: dict[str, list[float]] = {s: [] for s in sides}
    acc: dict[str, float] = {}
    for _ in range(args.rounds):
        for side, fn in sides.items():
            t, acc[side] = timed(fn, device)
            times[side].append(t)
    work = 2 * flops * args.n * args.steps  # FLOPs of the attack steps, full batch
    base = times["torchattacks"]
    out = {"model": kind, "norm": norm, "eps": eps, "clean_accuracy": accuracy(model, x, y),
           "sides": {}}
    for side, t in times.items():
        out["sides"][side] = {
            "median_s": statistics.median(t), "runs_s": t, "robust_accuracy": acc[side],
            "speedup_vs_torchattacks": statistics.median(b / a for a, b in zip(t, base)),
            "gflops": work / statistics.median(t) / 1e9,
            "pct_of_peak": 100 * work / statistics.median(t) / 1e9 / peak}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="d = m = 300, N = 2000")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--device", default="cpu")
    args = parse_torch_args(parser)
    args.d, args.n = (300, 2000) if args.small else (1000, 10_000)
    peak = matmul_peak(args.device)
    # radii where about half the points stay robust (d = m = 1000; l2 scales with sqrt(d)), so
    # early exit has broken and unbroken points to tell apart
    linf, l2 = 0.17, 4.0 * (args.d / 1000) ** 0.5
    cases = [("mlp", "linf", linf), ("mlp", "l2", l2),
             ("two_layer", "linf", linf), ("two_layer", "l2", l2)]
    rows = [bench(kind, norm, eps, args, args.device, peak) for kind, norm, eps in cases]
    later = matmul_peak(args.device)  # again after the runs: the best of both is the peak
    if later > peak:
        for r in rows:
            for s in r["sides"].values():
                s["pct_of_peak"] *= peak / later
        peak = later
    load = os.getloadavg()
    print(f"torch {torch.__version__} on {args.device}, {torch.get_num_threads()} threads, "
          f"{os.cpu_count()} cores, d = m = {args.d}, N = {args.n}, {args.steps} steps, "
          f"{args.rounds} interleaved rounds; matmul peak {peak:.0f} GFLOP/s; "
          f"load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}")
    print(f"{'model':10s} {'norm':5s} {'eps':>6s} {'clean':>6s}  {'side':24s} {'median s':>9s} "
          f"{'x torchattacks':>14s} {'robust acc':>10s} {'GFLOP/s':>8s} {'% peak':>7s}")
    for r in rows:
        for side, s in r["sides"].items():
            print(f"{r['model']:10s} {r['norm']:5s} {r['eps']:6.3f} {r['clean_accuracy']:6.3f}  "
                  f"{side:24s} {s['median_s']:9.2f} {s['speedup_vs_torchattacks']:14.2f} "
                  f"{s['robust_accuracy']:10.4f} {s['gflops']:8.1f} {s['pct_of_peak']:7.1f}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"torch": torch.__version__, "device": args.device,
                       "threads": torch.get_num_threads(), "cpus": os.cpu_count(),
                       "python": platform.python_version(), "load_average": load,
                       "matmul_peak_gflops": peak, "d": args.d, "n": args.n,
                       "steps": args.steps, "rounds": args.rounds, "rows": rows}, fh, indent=2)


if __name__ == "__main__":
    main()

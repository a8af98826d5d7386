"""Separation-table speed: exact nearest differently-labelled neighbour (advcore.separation) on
digits and on random MNIST-shaped data, l_inf and l2, pairs per second.

    .venv/bin/python benchmarks/separation_bench.py [--device cpu|cuda] [--sizes 1000 4000]
                                                   [--threads T] [--json PATH]

Prints a table; --json writes the rows. Timings only: nothing here passes or fails.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from advcore.data import build_data
from advcore.separation import nearest_other_label
from advcore.spec import ImageData

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._torch import parse_torch_args  # noqa: E402


def _time(fn, device) -> float:
    fn()  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--sizes", type=int, nargs="*", default=[1000, 4000])
    args = parse_torch_args(parser)
    device = torch.device(args.device)
    digits = build_data(ImageData(dataset="digits", binary=None), seed=0)
    cases = [("digits", digits.x_train, digits.y_train)]
    gen = torch.Generator().manual_seed(0)
    for n in args.sizes:  # MNIST-shaped random data
        cases.append((f"random {n}x784", torch.rand(n, 1, 28, 28, generator=gen),
                      torch.randint(0, 10, (n,), generator=gen)))
    rows = []
    print(f"{'data':>18} {'norm':>5} {'N':>6} {'D':>5} {'seconds':>9} {'Mpairs/s':>9}")
    for name, x, y in cases:
        x, y = x.to(device), y.to(device)
        for norm in ("linf", "l2"):
            seconds = _time(lambda: nearest_other_label(x, y, x, y, norm), device)
            pairs = x.shape[0] ** 2
            row = {"data": name, "norm": norm, "n": x.shape[0], "d": x[0].numel(),
                   "seconds": seconds, "mpairs_per_s": pairs / seconds / 1e6, "device": device.type}
            rows.append(row)
            print(f"{name:>18} {norm:>5} {row['n']:>6} {row['d']:>5} {seconds:>9.3f} {row['mpairs_per_s']:>9.1f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"threads": torch.get_num_threads(), "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()

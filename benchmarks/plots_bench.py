"""Plot and export benchmark: render time of each experiment plot (PNG and SVG) on synthetic
series of realistic size (the endpoint downsamples to 400 points per series first), and export
time / size of a long-form table as CSV and Parquet.

    .venv/bin/python benchmarks/plots_bench.py --json bench_plots.json

Not a test: timings depend on the machine; this prints a table (median of --repeat runs).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from service import plots  # noqa: E402
from service.export import COLUMNS, write_table  # noqa: E402


def synthetic_series(seeds: int, steps: int, clusters: int, radii: list[float]) -> dict:
    """Loss, accuracies, 2 attacks x radii robust accuracies, per-cluster correlations."""
    xs = list(range(0, steps))
    series: dict = {}

    def add(name, fn):
        series[name] = {s: [(x, fn(x, s)) for x in xs] for s in range(seeds)}

    add("train/loss", lambda x, s: math.exp(-x / steps) + 0.01 * s)
    add("test/loss", lambda x, s: math.exp(-x / steps) + 0.02 * s)
    add("train/clean_accuracy", lambda x, s: 1 - 0.5 * math.exp(-5 * x / steps))
    add("test/clean_accuracy", lambda x, s: 1 - 0.5 * math.exp(-4 * x / steps))
    for attack in ("pgd_l2", "feature_direction"):
        for r in radii:
            add(f"test/robust_accuracy/{attack}@{r:g}",
                lambda x, s, r=r: max(0.0, 1 - r / 8) * (1 - math.exp(-3 * x / steps)))
    for j in range(clusters):
        add(f"corr/cluster/{j}", lambda x, s, j=j: 0.7 * (1 - math.exp(-x / (steps / 4))))
    return series


def timed(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=400, help="points per series")
    parser.add_argument("--neurons", type=int, default=64)
    parser.add_argument("--clusters", type=int, default=10)
    parser.add_argument("--rows", type=int, default=200_000, help="export table rows")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None, help="write the results as JSON here")
    args = parser.parse_args()

    series = synthetic_series(args.seeds, args.steps, args.clusters, [1, 2, 4, 6, 8, 10])
    matrix = {"name": "cosine/cluster", "step": args.steps, "seed": 0,
              "values": [[math.cos(r + c) for c in range(args.clusters)]
                         for r in range(args.neurons)],
              "row_labels": [f"n{r}" for r in range(args.neurons)],
              "col_labels": [f"mu_{c}" for c in range(args.clusters)]}
    figures = {
        "learning_curves": lambda: plots.learning_curves(series, title="bench"),
        "robust_vs_radius": lambda: plots.robust_vs_radius(series, title="bench"),
        "correlations": lambda: plots.correlation_trajectories(series, title="bench",
                                                                positive=range(5)),
        "cosine": lambda: plots.cosine_heatmaps([matrix], title="bench"),
        "sweep_band": lambda: plots.band_plot(
            {f"point {i}": list(series["test/clean_accuracy"].values()) for i in range(4)},
            title="bench"),
    }
    plots.render(figures["robust_vs_radius"](), "png")  # warm the font cache
    results = []
    for name, build in figures.items():
        for fmt in plots.FORMATS:
            seconds = timed(lambda: plots.render(build(), fmt), args.repeat)
            size = len(plots.render(build(), fmt))
            results.append({"what": f"plot {name}", "format": fmt, "seconds": seconds,
                            "bytes": size})

    import pandas as pd

    n = args.rows
    frame = pd.DataFrame({"experiment_id": ["e" * 32] * n, "name": ["test/loss"] * n,
                          "seed": [i % args.seeds for i in range(n)], "step": list(range(n)),
                          "value": [math.sin(i) for i in range(n)]})[COLUMNS]
    for fmt in ("csv", "parquet"):
        seconds = timed(lambda: write_table(frame, fmt), args.repeat)
        results.append({"what": f"export {n} rows", "format": fmt, "seconds": seconds,
                        "bytes": len(write_table(frame, fmt))})

    print(f"{'what':<26} {'format':<8} {'median s':>9} {'KiB':>9}")
    for r in results:
        print(f"{r['what']:<26} {r['format']:<8} {r['seconds']:>9.3f} {r['bytes'] / 1024:>9.1f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

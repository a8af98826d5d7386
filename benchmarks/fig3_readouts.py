"""Feature averaging, Fig. 3: robust accuracy vs l2 radius of a binary-trained network and of a
fine-label network read out as binary by `argmax` (the paper's reading) and by `sum`.

    nice -n 10 .venv/bin/python benchmarks/fig3_readouts.py [--d 3072] [--k 10] [--n-attack 200]
                                                            [--seeds 0] [--json PATH]

Paper setting (science.md §A): d=3072, k=10, N=1000, 5 neurons per sign (binary) / per cluster
(fine), sigma=1, full-batch GD (lr 2.5/sqrt(d), 300 epochs), init 0.1. Every curve is the
minimum per point over PGD-50, AutoAttack (APGD-CE, APGD-T with the data model's start
directions) and the worst of the data model's fixed directions; the table prints each attack
and the 10% cliff (linear interpolation) beside sqrt(d/k), sqrt(d/2) and sqrt(2d/(k+2)).
Not a speed benchmark: it prints the curves the closing note of issue 15 reports.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from advcore.measure import cliff_radius  # noqa: E402
from advcore.run import run_experiment  # noqa: E402
from advcore.spec import parse_spec  # noqa: E402


def attacks(radii: list[float], readout: str) -> list[dict]:
    return [{"kind": "pgd", "radii": radii, "steps": 50, "readout": readout},
            {"kind": "autoattack", "radii": radii, "readout": readout},
            {"kind": "feature_direction", "directions": "data", "radii": radii,
             "readout": readout}]


def spec(labels: str, d: int, k: int, seeds: list[int], n_attack: int, radii: list[float],
         readouts: list[str]) -> dict:
    return {"seeds": seeds,
            "data": {"kind": "multi_cluster", "d": d, "k": k, "n_train": 1000,
                     "n_test": n_attack},
            "learner": {"kind": "two_layer_relu", "width": 10 if labels == "binary" else 5,
                        "init_scale": 0.1},
            "training": {"labels": labels, "epochs": 300,
                         "optimizer": {"kind": "gd", "lr": 2.5 / math.sqrt(d)}},
            "evaluation": {"every": 300, "readout": "argmax", "record": ["correlations"],
                           "attacks": [a for r in readouts for a in attacks(radii, r)]}}


def curves(summary: dict, radii: list[float]) -> dict[str, dict[str, list[float]]]:
    """{read-out: {attack label: accuracies over radii, 'min': the minimum over attacks}}."""
    out: dict[str, dict[str, list[float]]] = {}
    for row in summary["robust_accuracy"]:
        suffix = row["attack"].rsplit("_", 1)[-1]
        readout = suffix if suffix in ("argmax", "sum") else "binary"
        out.setdefault(readout, {}).setdefault(row["attack"], []).append(row["accuracy"])
    for per in out.values():
        per["min"] = [min(v[i] for v in per.values()) for i in range(len(radii))]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--d", type=int, default=3072)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--n-attack", type=int, default=200)
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    d, k, seeds = args.d, args.k, [int(s) for s in args.seeds.split(",")]
    ref = {"sqrt(d/k)": math.sqrt(d / k), "sqrt(d/2)": math.sqrt(d / 2),
           "sqrt(2d/(k+2))": math.sqrt(2 * d / (k + 2))}
    binary_radii = [round(ref["sqrt(d/k)"] * f, 2) for f in (0.6, 0.8, 0.9, 1.0, 1.1, 1.2, 1.4)]
    fine_radii = [round(ref["sqrt(d/2)"] * f, 2)
                  for f in (0.4, 0.5, 0.6, 0.7, 0.8, 0.87, 0.92, 0.97, 1.02, 1.07, 1.12, 1.2)]
    result: dict = {"d": d, "k": k, "seeds": seeds, "n_attack": args.n_attack, "reference": ref}
    for name, labels, radii, readouts in [("binary", "binary", binary_radii, ["binary"]),
                                          ("fine", "fine", fine_radii, ["argmax", "sum"])]:
        started = time.perf_counter()
        summary = run_experiment(parse_spec(spec(labels, d, k, seeds, args.n_attack, radii,
                                                 readouts)), device="cpu")
        per = curves(summary, radii)
        result[name] = {"radii": radii, "curves": per, "seconds": time.perf_counter() - started,
                        "clean": summary["clean_accuracy"],
                        "cliff": {r: cliff_radius(radii, c["min"]) for r, c in per.items()}}
        print(f"\n{name}-trained ({result[name]['seconds']:.0f} s), clean {summary['clean_accuracy']}")
        print(f"{'radius':>28s} " + " ".join(f"{r:6.2f}" for r in radii))
        for readout, c in per.items():
            for label, acc in c.items():
                print(f"{readout + ' ' + label:>28s} " + " ".join(f"{a:6.3f}" for a in acc))
        print("10% cliff:", {r: round(v, 2) if v else v for r, v in result[name]["cliff"].items()})
    print("\nreference:", {n: round(v, 2) for n, v in ref.items()})
    cliff_b = result["binary"]["cliff"]["binary"]
    for readout in ("argmax", "sum"):
        cliff_f = result["fine"]["cliff"][readout]
        if cliff_b and cliff_f:
            print(f"fine ({readout}) / binary cliff ratio: {cliff_f / cliff_b:.2f} "
                  f"(sqrt(k/2) = {math.sqrt(k / 2):.2f})")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()

"""Feature averaging, Fig. 3: robust accuracy vs l2 radius of a binary-trained network and of a
fine-label network read out as binary by `argmax` (the paper's reading) and by `sum`.

    nice -n 10 .venv/bin/python benchmarks/fig3_readouts.py [--d 3072] [--k 10] [--n-attack 200]
                                                            [--seeds 0] [--json PATH]

Paper setting (science.md §A): d=3072, k=10, N=1000, 5 neurons per sign (binary) / per cluster
(fine), sigma=1, full-batch GD (lr 2.5/sqrt(d), 300 epochs), init 0.1. Every curve is the
minimum per point over AutoAttack (APGD-CE, APGD-T with the data model's start directions; the
argmax read-out's include the nearest cluster pairs), the worst of the data model's fixed
directions, and with --pgd PGD-50; radii around each read-out's theory mark; the table prints
each attack and the 10% cliff (linear interpolation) beside sqrt(d/k), sqrt(d/2) and
sqrt(2d/(k+2)).
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


def attacks(radii: list[float], readout: str, pgd: bool) -> list[dict]:
    return [*([{"kind": "pgd", "radii": radii, "steps": 50, "readout": readout}] if pgd else []),
            {"kind": "autoattack", "radii": radii, "readout": readout},
            {"kind": "feature_direction", "directions": "data", "radii": radii,
             "readout": readout}]


def spec(labels: str, d: int, k: int, seeds: list[int], n_attack: int,
         radii: dict[str, list[float]], pgd: bool) -> dict:
    return {"seeds": seeds,
            "data": {"kind": "multi_cluster", "d": d, "k": k, "n_train": 1000,
                     "n_test": n_attack},
            "learner": {"kind": "two_layer_relu", "width": 10 if labels == "binary" else 5,
                        "init_scale": 0.1},
            "training": {"labels": labels, "epochs": 300,
                         "optimizer": {"kind": "gd", "lr": 2.5 / math.sqrt(d)}},
            "evaluation": {"every": 300, "readout": "argmax", "record": ["correlations"],
                           "attacks": [a for r, rr in radii.items() for a in attacks(rr, r, pgd)]}}


def curves(summary: dict) -> dict[str, dict[str, list[float]]]:
    """{read-out: {attack label: accuracies over its radii, 'min': per point the worst over
    that read-out's attacks (the summary's robust_min)}}."""
    out: dict[str, dict[str, list[float]]] = {}

    def reading(label: str) -> str:
        suffix = label.rsplit("_", 1)[-1]
        return suffix if suffix in ("argmax", "sum") else "binary"

    for row in summary["robust_accuracy"]:
        out.setdefault(reading(row["attack"]), {}).setdefault(row["attack"], []).append(
            row["accuracy"])
    for row in summary["robust_min"]:
        out[reading(row["threat"])].setdefault("min", []).append(row["accuracy"])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--d", type=int, default=3072)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--n-attack", type=int, default=200)
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--pgd", action="store_true", help="also PGD-50 (AutoAttack is stronger)")
    parser.add_argument("--only", choices=("binary", "fine"), help="run one of the two networks")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    d, k, seeds = args.d, args.k, [int(s) for s in args.seeds.split(",")]
    ref = {"sqrt(d/k)": math.sqrt(d / k), "sqrt(d/2)": math.sqrt(d / 2),
           "sqrt(2d/(k+2))": math.sqrt(2 * d / (k + 2))}
    at = lambda name, factors: [round(ref[name] * f, 2) for f in factors]  # noqa: E731
    runs = [("binary", {"binary": at("sqrt(d/k)", (0.7, 0.85, 0.95, 1.05, 1.15, 1.3))}),
            ("fine", {"argmax": at("sqrt(d/2)", (0.7, 0.8, 0.87, 0.94, 1.0, 1.06, 1.15)),
                      "sum": at("sqrt(2d/(k+2))", (0.8, 1.0, 1.15, 1.3, 1.45, 1.6))})]
    result: dict = {"d": d, "k": k, "seeds": seeds, "n_attack": args.n_attack, "reference": ref}
    for labels, radii in runs:
        if args.only and labels != args.only:
            continue
        started = time.perf_counter()
        summary = run_experiment(parse_spec(spec(labels, d, k, seeds, args.n_attack, radii,
                                                 args.pgd)), device="cpu").to_stored()
        per = curves(summary)
        result[labels] = {"radii": radii, "curves": per, "clean": summary["clean_accuracy"],
                          "seconds": time.perf_counter() - started,
                          "cliff": {r: cliff_radius(radii[r], c["min"]) for r, c in per.items()}}
        print(f"\n{labels}-trained ({result[labels]['seconds']:.0f} s), "
              f"clean {summary['clean_accuracy']}")
        for readout, c in per.items():
            print(f"{readout + ' radius':>30s} " + " ".join(f"{r:6.2f}" for r in radii[readout]))
            for label, acc in c.items():
                print(f"{readout + ' ' + label:>30s} " + " ".join(f"{a:6.3f}" for a in acc))
        print("10% cliff:", {r: round(v, 2) if v else v
                             for r, v in result[labels]["cliff"].items()})
    print("\nreference:", {n: round(v, 2) for n, v in ref.items()})
    cliff_b = result.get("binary", {}).get("cliff", {}).get("binary")
    for readout in ("argmax", "sum") if "fine" in result else ():
        cliff_f = result["fine"]["cliff"][readout]
        if cliff_b and cliff_f:
            print(f"fine ({readout}) / binary cliff ratio: {cliff_f / cliff_b:.2f} "
                  f"(sqrt(k/2) = {math.sqrt(k / 2):.2f})")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()

"""The patch model's claim under reliable attacks: per seed, clean accuracy and robust accuracy
at the training radius under advcore PGD, APGD-CE, APGD-T, advcore autoattack and torchattacks'
APGD-T (targeted DLR, an independent implementation), next to the correlation growth of standard
vs adversarial training (examples/patch_standard.json vs patch_adversarial.json).

    python benchmarks/patch_reliability.py --seeds 10 11 12 13 14 [--json out.json]
    python benchmarks/patch_reliability.py --seeds 0 1 2 --set learner.rho=0.2 --no-standard

`--set path=value` overrides a field of both specs (JSON values), e.g.
`training.adversary.kind="pgd"`; `--set-adv path=value` only the adversarial one (e.g. a
regulariser, `training.optimizer.l1=0.3`, that standard training should not get).
torchattacks clamps to [0, 1]: the unbounded patch inputs are mapped affinely into [0, 1] with
room for the ball (the l-inf ball maps to a ball of radius eps / scale, so nothing is clamped
that the threat allows). `eps*l1/rho` is the spread attack's lever: eps * max_filter ||w||_1 per
patch, in units of the sReLU knee (robust needs it below ~1, science.md §B).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from advcore.attacks import robust_accuracy  # noqa: E402
from advcore.data import build_data, stack_seeds  # noqa: E402
from advcore.evaluate import Evaluator  # noqa: E402
from advcore.learners import build_learner  # noqa: E402
from advcore.observe import CollectingObserver  # noqa: E402
from advcore.spec import AttackSpec, parse_spec  # noqa: E402
from advcore.train import make_task, train  # noqa: E402
from devtools.patch_oracle import seed_model, torchattacks_apgdt  # noqa: E402

EXAMPLES = ROOT / "examples"


def _set(body: dict, path: str, value) -> None:
    *head, last = path.split(".")
    for key in head:
        body = body.setdefault(key, {})
    body[last] = value


def load_spec(example: str, seeds: list[int], overrides: list[tuple[str, object]]):
    body = json.loads((EXAMPLES / example).read_text())
    body["seeds"] = seeds
    for path, value in overrides:
        if path.startswith("training.adversary") and body["training"]["mode"] != "adversarial":
            continue
        _set(body, path, value)
    body["evaluation"]["attacks"] = []
    body["evaluation"]["every"] = body["training"]["epochs"]
    spec = parse_spec(body).resolve()
    spec.evaluation.attacks = []  # `evaluate` below runs every attack once, at the end
    return spec


def train_model(spec):
    seeds = spec.seed_list
    data = stack_seeds([build_data(spec.data, s, torch.device("cpu")) for s in seeds])
    task = make_task(spec, data)
    model = build_learner(spec, data.in_shape, task.n_outputs, seeds, torch.device("cpu"))
    observer = CollectingObserver()
    train(spec, model, data, task, observer, Evaluator(spec, model, data, task, observer))
    corr = {}
    for r in observer.metrics:
        if r.name.startswith("corr/"):
            _, kind, cls = r.name.split("/")
            corr.setdefault((r.seed, kind, r.step), {})[int(cls)] = r.value
    return model, data, corr


def growth(corr, seed: int, kind: str, epochs: int) -> list[float]:
    end, start = corr[(seed, kind, epochs)], corr[(seed, kind, 0)]
    return [end[c] - start[c] for c in sorted(end)]


def evaluate(spec, model, data, eps: float, n: int, with_torchattacks: bool) -> list[dict]:
    x, y = data.x_test[:, :n], data.y_test[:, :n]  # (S, n, P, d), (S, n)
    attacks = {
        "pgd": AttackSpec(kind="pgd", norm="linf", radii=[eps], steps=20, loss="margin"),
        "apgd_ce": AttackSpec(kind="apgd", norm="linf", radii=[eps]),
        "apgd_t": AttackSpec(kind="apgd", norm="linf", radii=[eps], targeted=True,
                             n_target_classes=spec.data.k - 1),
        "autoattack": AttackSpec(kind="autoattack", norm="linf", radii=[eps],
                                 n_target_classes=spec.data.k - 1),
    }
    gens = lambda i: [torch.Generator().manual_seed(1000 * s + i) for s in spec.seed_list]  # noqa: E731
    acc = {name: robust_accuracy(model, x, y, a, feature_ndim=2, generator=gens(i)).accuracy[0]
           for i, (name, a) in enumerate(attacks.items())}
    rows = []
    with torch.no_grad():
        clean = (model(x).argmax(-1) == y).float().mean(-1)
    for s, seed in enumerate(spec.seed_list):
        row = {"seed": seed, "clean": float(clean[s]),
               "eps_l1_over_rho": float(eps * model.w.detach()[s].abs().sum(-1).max() / model.rho)}
        row.update({name: float(a[s]) for name, a in acc.items()})
        if with_torchattacks:
            row["apgd_t_torchattacks"] = torchattacks_apgdt(seed_model(model, s), x[s], y[s], eps,
                                                            spec.data.k, seed)
        rows.append(row)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[10, 11, 12, 13, 14])
    p.add_argument("--set", action="append", default=[], metavar="PATH=JSON")
    p.add_argument("--set-adv", action="append", default=[], metavar="PATH=JSON")
    p.add_argument("--n-attack", type=int, default=200)
    p.add_argument("--no-standard", action="store_true", help="adversarial training only")
    p.add_argument("--no-torchattacks", action="store_true")
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    torch.set_num_threads(1)  # a shared machine: one core per search
    overrides = [(k, json.loads(v)) for k, v in (item.split("=", 1) for item in args.set)]
    adv_only = [(k, json.loads(v)) for k, v in (item.split("=", 1) for item in args.set_adv)]
    started = time.perf_counter()
    adv = load_spec("patch_adversarial.json", args.seeds, overrides + adv_only)
    eps = adv.training.adversary.radii[0]
    model, data, corr_adv = train_model(adv)
    rows = evaluate(adv, model, data, eps, args.n_attack, not args.no_torchattacks)
    epochs = adv.training.epochs
    corr_std = None
    if not args.no_standard:
        std = load_spec("patch_standard.json", args.seeds, overrides)
        _, _, corr_std = train_model(std)
    for row in rows:
        seed = row["seed"]
        row["adv_u_growth"] = growth(corr_adv, seed, "robust", epochs)
        row["adv_v_growth"] = growth(corr_adv, seed, "non_robust", epochs)
        if corr_std is not None:
            row["std_u_growth"] = growth(corr_std, seed, "robust", std.training.epochs)
            row["std_v_growth"] = growth(corr_std, seed, "non_robust", std.training.epochs)
    cols = [c for c in ("clean", "pgd", "apgd_ce", "apgd_t", "apgd_t_torchattacks", "autoattack")
            if c in rows[0]]
    print(f"l-inf eps={eps:g}, {args.n_attack} test points, overrides {overrides}, "
          f"adversarial only {adv_only}")
    print("seed " + " ".join(f"{c:>10.10s}" for c in cols) + "  u/v growth std | adv (min over classes)")
    for row in rows:
        g = lambda key: min(row[key]) if key in row else float("nan")  # noqa: E731
        print(f"{row['seed']:>4} " + " ".join(f"{row[c]:>10.3f}" for c in cols)
              + f"  std u {g('std_u_growth'):.2f} v {g('std_v_growth'):.2f}"
              + f" | adv u {g('adv_u_growth'):.2f} v(max) {max(row['adv_v_growth']):.2f}"
              + f" | eps*l1/rho {row['eps_l1_over_rho']:.2f}")
    print(f"({time.perf_counter() - started:.0f} s)")
    if args.json:
        args.json.write_text(json.dumps({"eps": eps, "overrides": overrides,
                                         "adversarial_overrides": adv_only, "rows": rows},
                                        indent=2) + "\n")


if __name__ == "__main__":
    main()

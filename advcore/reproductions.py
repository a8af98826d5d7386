"""Reproductions: one catalogue entry per figure / table of the three papers (science.md), each
a base spec + a grid + seeds in two sizes, and the paper's claims as functions of the runs.

An entry is run as ONE sweep (the server: service.reproductions; locally: `run_local`): one
member per grid point, its seeds batched. What a claim reads is a list of `PointResult`, one
per grid point, built the same way on both paths:
- `finals[i]`: seed i's final numbers under metric-style keys (advcore.summary
  RunSummary.metrics(), plus the last value of each series the entry names in `series`, e.g.
  `train/robust_accuracy/...` which the summary does not keep);
- `summaries[i]`: seed i's summary dict (studies keep their tables there);
- `series`: {name: {seed: [[step, value], ...]}} of the entry's `trajectories` (figures only).

A claim returns our effect size (mean and sample std over seeds of a per-seed number), the
paper's reference number (or None for a qualitative claim), the criterion and holds / does not
hold. `verdict(...)` collects them. Nothing here imports a web, database or plotting library:
the figures are drawn by service.reproduction_figures from the same results.
"""

from __future__ import annotations

import copy
import math
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Literal

from advcore.measure import cliff_radius
from advcore.spec import format_radius
from advcore.stats import mean, sample_std

Size = Literal["quick", "full"]
SIZES: tuple[Size, ...] = ("quick", "full")


@dataclass
class PointResult:
    """One grid point's runs: its grid values, seeds and per-seed numbers (see module doc)."""

    point: dict[str, Any]
    seeds: list[int]
    finals: list[dict[str, float]]
    summaries: list[dict[str, Any]] = field(default_factory=list)
    series: dict[str, dict[int, list[list[float]]]] = field(default_factory=dict)
    status: str = "succeeded"

    def to_json(self) -> dict[str, Any]:
        return {"point": self.point, "seeds": self.seeds, "finals": self.finals,
                "status": self.status}


@dataclass(frozen=True)
class SizeSpec:
    """What one size runs: the base spec, the grid (dotted path -> values) and the seeds;
    `params` are the numbers the claims and marks need (d, k, ...)."""

    base: dict[str, Any]
    grid: dict[str, list[Any]]
    seeds: list[int]
    params: dict[str, float] = field(default_factory=dict)
    minutes: float = 1.0  # rough wall time on a 2-core CPU (full: a GPU or a long night)


@dataclass(frozen=True)
class Claim:
    key: str
    text: str
    paper: float | None  # the paper's number for our effect size (None: qualitative)
    paper_text: str  # where the paper's number comes from
    criterion: str  # what "holds" means, in words
    # (points, params) -> (per-seed values of our effect size, holds)
    evaluate: Callable[[list[PointResult], dict[str, float]], tuple[list[float], bool]]


@dataclass(frozen=True)
class Reproduction:
    name: str
    paper: str  # A | B | C (science.md)
    figure: str  # which figure / table of the paper
    title: str
    sizes: dict[str, SizeSpec]
    claims: list[Claim]
    series: tuple[str, ...] = ()  # metric-name prefixes whose last value joins `finals`
    trajectories: tuple[str, ...] = ()  # metric-name prefixes loaded as whole series (figure)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "paper": self.paper, "figure": self.figure,
                "title": self.title,
                "sizes": {n: {"grid": s.grid, "seeds": s.seeds, "params": s.params,
                              "minutes": s.minutes, "members": _n_points(s.grid)}
                          for n, s in self.sizes.items()},
                "claims": [{"key": c.key, "text": c.text, "paper": c.paper,
                            "paper_text": c.paper_text, "criterion": c.criterion}
                           for c in self.claims]}


def _n_points(grid: dict[str, list[Any]]) -> int:
    return math.prod(len(v) for v in grid.values()) if grid else 1


# --------------------------------------------------------------------------- helpers


ROBUST_KEY = re.compile(r"^test/robust_accuracy/(?P<label>[^@]+)@(?P<radius>[^@]+)$")


def set_path(doc: dict, dotted: str, value: Any) -> None:
    """Set `value` at a dotted path of a JSON document (objects made on the way)."""
    *parents, last = dotted.split(".")
    node: Any = doc
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
    if isinstance(node, list):
        node[int(last)] = copy.deepcopy(value)
    else:
        node[last] = copy.deepcopy(value)


def points_of(size: SizeSpec) -> list[dict[str, Any]]:
    """The grid's points in the sweep's order (first path varies slowest)."""
    import itertools

    paths = list(size.grid)
    return [dict(zip(paths, combo)) for combo in itertools.product(*(size.grid[p] for p in paths))]


def member_spec(entry: Reproduction, size_name: str, point: dict[str, Any]) -> dict[str, Any]:
    """The spec of one grid point (all seeds batched), as the sweep would build it."""
    size = entry.sizes[size_name]
    doc = copy.deepcopy(size.base)
    for path, value in point.items():
        set_path(doc, path, value)
    doc.pop("seed", None)
    doc["seeds"] = list(size.seeds)
    return doc


def point_matches(point: dict[str, Any], **want: Any) -> bool:
    return all(point.get(k) == v for k, v in want.items())


def find(points: list[PointResult], **want: Any) -> PointResult:
    for p in points:
        if point_matches(p.point, **want):
            return p
    raise KeyError(f"no grid point with {want}")


def curve(finals: dict[str, float], label: str) -> tuple[list[float], list[float]]:
    """(radii ascending, accuracies) of one attack / threat label in a seed's finals."""
    pts = []
    for key, value in finals.items():
        m = ROBUST_KEY.match(key)
        if m and m["label"] == label:
            pts.append((float(m["radius"]), value))
    pts.sort()
    return [r for r, _ in pts], [a for _, a in pts]


def seed_values(p: PointResult, fn: Callable[[dict[str, float]], float | None]) -> list[float]:
    out = []
    for finals in p.finals:
        v = fn(finals)
        if v is not None and math.isfinite(v):
            out.append(float(v))
    return out


def _cliff(label: str, level: float = 0.1):
    def fn(finals: dict[str, float]) -> float | None:
        radii, acc = curve(finals, label)
        if not radii:
            return None
        found = cliff_radius(radii, acc, level)
        return found if found is not None else math.inf
    return fn


def stats(values: list[float]) -> dict[str, Any]:
    return {"mean": mean(values), "std": sample_std(values), "n": len(values),
            "per_seed": values}


# --------------------------------------------------------------------------- A: feature averaging


def _fa_attacks(radii: list[float], steps: int | None, pgd_steps: int | None) -> list[dict]:
    attacks: list[dict] = [{"kind": "feature_direction", "directions": "data", "radii": radii}]
    if pgd_steps:
        attacks.append({"kind": "pgd", "radii": radii, "steps": pgd_steps})
    if steps:
        attacks.append({"kind": "autoattack", "radii": radii, "steps": steps})
    return attacks


def _fa_size(d: int, k: int, n_train: int, n_test: int, epochs: int, width: int,
             seeds: list[int], steps: int | None, pgd_steps: int | None, minutes: float
             ) -> SizeSpec:
    r_dk, r_d2 = math.sqrt(d / k), math.sqrt(d / 2)
    radii = sorted({round(r_dk * f, 2) for f in (0.5, 0.75, 1.0, 1.25, 1.6)}
                   | {round(r_d2 * f, 2) for f in (0.7, 0.85, 1.0, 1.15, 1.3)})
    base = {"name": "feature averaging", "tags": ["reproduction", "feature-averaging"],
            "data": {"kind": "multi_cluster", "d": d, "k": k, "sigma": 1.0,
                     "n_train": n_train, "n_test": n_test},
            "learner": {"kind": "two_layer_relu", "width": width, "init_scale": 0.1},
            "training": {"labels": "binary", "epochs": epochs,
                         "optimizer": {"kind": "gd", "lr": round(2.5 / math.sqrt(d), 5)}},
            "evaluation": {"every": max(1, epochs // 10), "attack_every": [epochs],
                           "readout": "argmax", "n_attack": n_test,
                           "record": ["correlations"],
                           "attacks": _fa_attacks(radii, steps, pgd_steps)}}
    return SizeSpec(base=base, grid={"training.labels": ["binary", "fine"]}, seeds=seeds,
                    params={"d": d, "k": k, "sqrt_d_k": r_dk, "sqrt_d_2": r_d2,
                            "inv_sqrt_k_2": 1 / math.sqrt(k / 2)}, minutes=minutes)


# the paper's Fig. 3 (d=3072, k=10) as read from its plots; 10% cliffs by linear interpolation
FA_PAPER = {"binary": [(12, 1.0), (16, 0.31), (18, 0.02)],
            "fine": [(34, 1.0), (38, 0.35), (44, 0.0)], "d": 3072, "k": 10}
FA_PAPER_CLIFF = {key: cliff_radius([r for r, _ in FA_PAPER[key]], [a for _, a in FA_PAPER[key]])
                  for key in ("binary", "fine")}


def _fa_claims() -> list[Claim]:
    p_dk = math.sqrt(FA_PAPER["d"] / FA_PAPER["k"])
    p_d2 = math.sqrt(FA_PAPER["d"] / 2)
    b_ratio = FA_PAPER_CLIFF["binary"] / p_dk
    f_ratio = FA_PAPER_CLIFF["fine"] / p_d2
    fb = FA_PAPER_CLIFF["fine"] / FA_PAPER_CLIFF["binary"]

    def binary_cliff(points, params):
        vals = [v / params["sqrt_d_k"] for v in seed_values(
            find(points, **{"training.labels": "binary"}), _cliff("min_l2"))]
        return vals, bool(vals) and 0.7 <= mean(vals) <= 1.5

    def fine_cliff(points, params):
        vals = [v / params["sqrt_d_2"] for v in seed_values(
            find(points, **{"training.labels": "fine"}), _cliff("min_l2"))]
        return vals, bool(vals) and 0.7 <= mean(vals) <= 1.5

    def ratio(points, params):
        b = seed_values(find(points, **{"training.labels": "binary"}), _cliff("min_l2"))
        f = seed_values(find(points, **{"training.labels": "fine"}), _cliff("min_l2"))
        vals = [fv / bv for fv, bv in zip(f, b) if bv > 0]
        return vals, bool(vals) and min(vals) > 1.3

    def cos_binary(points, params):
        vals = seed_values(find(points, **{"training.labels": "binary"}),
                           lambda f: f.get("corr/cluster/mean"))
        return vals, bool(vals) and abs(mean(vals) - params["inv_sqrt_k_2"]) <= 0.1

    def cos_fine(points, params):
        vals = seed_values(find(points, **{"training.labels": "fine"}),
                           lambda f: f.get("corr/cluster/mean"))
        return vals, bool(vals) and mean(vals) >= 0.85

    return [
        Claim("binary_cliff", "binary-trained: robust accuracy falls to 10% at r ~ sqrt(d/k) "
              "(effect: cliff / sqrt(d/k))", round(b_ratio, 3),
              f"Fig. 3: 10% cliff ~{FA_PAPER_CLIFF['binary']:.1f} at sqrt(d/k) = {p_dk:.1f}",
              "mean ratio in [0.7, 1.5]", binary_cliff),
        Claim("fine_cliff", "fine-label (argmax read-out): cliff at r ~ sqrt(d/2) "
              "(effect: cliff / sqrt(d/2))", round(f_ratio, 3),
              f"Fig. 3: 10% cliff ~{FA_PAPER_CLIFF['fine']:.1f} at sqrt(d/2) = {p_d2:.1f}",
              "mean ratio in [0.7, 1.5]", fine_cliff),
        Claim("fine_over_binary", "fine labels are markedly more robust (effect: fine cliff / "
              "binary cliff; theory sqrt(k/2))", round(fb, 3),
              "Fig. 3: cliffs ~{:.1f} / ~{:.1f}".format(FA_PAPER_CLIFF["fine"],
                                                       FA_PAPER_CLIFF["binary"]),
              "every seed's ratio > 1.3", ratio),
        Claim("binary_averaging", "binary-trained neurons average their class's clusters "
              "(effect: mean_j max_r cos(w_r, mu_j); theory 1/sqrt(k/2))",
              round(1 / math.sqrt(FA_PAPER["k"] / 2), 3),
              "Sec. 4: cosine ~1/sqrt(k/2) (0.45 at k=10)",
              "within 0.1 of 1/sqrt(k/2)", cos_binary),
        Claim("fine_decoupled", "fine-label neurons decouple: each aligns with one cluster "
              "(effect: mean_j max_r cos(w_r, mu_j))", 1.0,
              "Sec. 4: cosine ~1 on one cluster", "mean >= 0.85", cos_fine),
    ]


FEATURE_AVERAGING = Reproduction(
    name="feature_averaging", paper="A", figure="Fig. 3 + cosine matrices",
    title="Feature averaging: robust accuracy vs l2 radius, binary-trained vs fine-label "
          "(argmax read-out), with the sqrt(d/k) and sqrt(d/2) marks; neuron-cluster cosines",
    sizes={"quick": _fa_size(200, 10, 300, 100, 200, 10, [0, 1, 2], steps=None, pgd_steps=20,
                             minutes=1.0),
           "full": _fa_size(3072, 10, 1000, 500, 300, 10, [0, 1, 2, 3, 4], steps=100,
                            pgd_steps=50, minutes=120.0)},
    claims=_fa_claims())


# --------------------------------------------------------------------------- B: patch model


def _patch_size(n_train: int, epochs: int, every: int, seeds: list[int], n_attack: int,
                batch: int, lr: float, steps: int, aa_steps: int, minutes: float) -> SizeSpec:
    base = {"name": "patch: standard vs adversarial", "tags": ["reproduction", "patch"],
            "data": {"kind": "patch", "k": 4, "d": 64, "patches": 48, "n_robust": 1,
                     "alpha": 1.0, "beta": 0.4, "sigma_n": 0.02, "n_train": n_train,
                     "n_test": max(n_attack, 200), "features": "sparse_robust"},
            "learner": {"kind": "patch_cnn", "width": 8, "q": 3.0, "rho": 0.1,
                        "init_scale": 0.1},
            "training": {"mode": "standard", "epochs": epochs, "batch_size": batch,
                         "loss": "cross_entropy", "optimizer": {"kind": "sgd", "lr": lr},
                         "adversary": {"kind": "pgd", "norm": "linf", "radii": [0.08],
                                       "steps": steps, "loss": "margin"}},
            "evaluation": {"every": every, "attack_every": [epochs], "n_attack": n_attack,
                           "record": ["correlations"],
                           "attacks": [{"kind": "autoattack", "norm": "linf",
                                        "radii": [0.08], "steps": aa_steps}]}}
    return SizeSpec(base=base, grid={"training.mode": ["standard", "adversarial"]},
                    seeds=seeds, params={"radius": 0.08}, minutes=minutes)


def _patch_claims() -> list[Claim]:
    def ratio_of(mode):
        def fn(points, params):
            p = find(points, **{"training.mode": mode})
            return seed_values(p, lambda f: f["corr/non_robust/mean"] / f["corr/robust/mean"]
                               if f.get("corr/robust/mean") else None)
        return fn

    def standard(points, params):
        vals = ratio_of("standard")(points, params)
        return vals, bool(vals) and min(vals) > 1.0

    def adversarial(points, params):
        vals = ratio_of("adversarial")(points, params)
        return vals, bool(vals) and max(vals) < 1.0

    def robust_gain(points, params):
        key = f"test/robust_accuracy/min_linf@{format_radius(params['radius'])}"
        s = seed_values(find(points, **{"training.mode": "standard"}), lambda f: f.get(key))
        a = seed_values(find(points, **{"training.mode": "adversarial"}), lambda f: f.get(key))
        vals = [av - sv for av, sv in zip(a, s)]
        return vals, bool(vals) and mean(vals) > 0.2

    return [
        Claim("standard_learns_v", "standard training learns the non-robust features "
              "(effect: final corr v / corr u, mean over classes)", None,
              "Thm 1: max_r <w, v> >> max_r <w, u> (no number in the paper)",
              "every seed's ratio > 1", standard),
        Claim("adversarial_flips_to_u", "adversarial training flips to the robust features "
              "(effect: final corr v / corr u)", None,
              "Thm 2: after the phase transition u dominates (no number in the paper)",
              "every seed's ratio < 1", adversarial),
        Claim("robust_accuracy_gain", "adversarial training buys robust accuracy (effect: "
              "robust acc. adversarial - standard, l_inf, minimum over attacks)", None,
              "robust acc. ~0 (standard) vs high (adversarial)", "mean gain > 0.2",
              robust_gain),
    ]


PATCH_TRAJECTORIES = Reproduction(
    name="patch_trajectories", paper="B", figure="correlation trajectories (Fig. 1/2)",
    title="Patch model: correlations with the robust (u) and non-robust (v) features over "
          "training, standard vs adversarial (the flip)",
    sizes={"quick": _patch_size(200, 30, 3, [0, 1], 100, 50, 0.1, 3, 20, minutes=3.0),
           "full": _patch_size(1000, 60, 2, [0, 1, 2, 3, 4], 500, 100, 0.05, 5, 100,
                               minutes=30.0)},
    claims=_patch_claims(), trajectories=("corr/robust/", "corr/non_robust/"))


# NRF / RF targeted attacks (Table 2 of the seed): CIFAR-10 numbers, mean over the 4 pairs
TABLE2 = {"standard": {"non_robust": [71.41, 80.36, 54.08, 76.74], "robust": [11.30, 9.58, 1.24, 2.63]},
          "adversarial": {"non_robust": [9.60, 15.16, 0.34, 0.40], "robust": [19.38, 26.00, 2.64, 1.96]}}


def _table2_mean(model: str, subspace: str) -> float:
    return sum(TABLE2[model][subspace]) / 4 / 100


def _fattack_size(epochs: int, seeds: list[int], recon_steps: int, attack_steps: int,
                  minutes: float) -> SizeSpec:
    base = {"name": "NRF-PGD vs RF-PGD", "tags": ["reproduction", "robust-features"],
            "data": {"kind": "image", "dataset": "digits", "binary": None},
            "learner": {"kind": "mlp", "widths": [128, 32]},
            "training": {"optimizer": {"kind": "adam", "lr": 0.01}, "epochs": epochs},
            "evaluation": {"every": epochs, "record": []},
            "study": {"kind": "feature_attacks", "pairs": [[3, 8], [8, 3], [1, 7], [7, 1]],
                      "adversary": {"kind": "pgd", "norm": "l2", "radii": [0.5], "steps": 10},
                      "attack": {"kind": "pgd", "norm": "l2", "radii": [1.0, 2.0],
                                 "steps": attack_steps},
                      "reconstruction": {"steps": recon_steps, "step_size": 0.1,
                                         "n_per_class": 20, "n_directions": 4,
                                         "init": "data"}}}
    # the claims read radius 1: at 2 every targeted attack succeeds on digits (saturated)
    return SizeSpec(base=base, grid={}, seeds=seeds, params={"radius": 1.0}, minutes=minutes)


def _attack_rows(p: PointResult, model: str, subspace: str, radius: float) -> list[float]:
    """Per seed: the targeted success averaged over the study's pairs."""
    rows = [r for r in (p.summaries[0].get("feature_attacks") or []) if r["model"] == model
            and r["subspace"] == subspace and abs(r["radius"] - radius) < 1e-9] if p.summaries else []
    if not rows:
        return []
    n = len(rows[0]["per_seed"])
    return [sum(r["per_seed"][s] for r in rows) / len(rows) for s in range(n)]


def _beyond_spread(vals: list[float]) -> bool:
    """A positive effect larger than its spread over seeds (mean > sample std)."""
    return bool(vals) and mean(vals) > 0 and mean(vals) > (sample_std(vals) or 0.0)


def _success_gap(first: tuple[str, str], second: tuple[str, str]):
    """A claim's check: per seed, the targeted success of (model, subspace) `first` minus that
    of `second`; it holds when the gap is positive beyond its spread over seeds."""
    def check(points, params):
        a = _attack_rows(points[0], *first, params["radius"])
        b = _attack_rows(points[0], *second, params["radius"])
        vals = [x - y for x, y in zip(a, b)]
        return vals, _beyond_spread(vals)
    return check


def _fattack_claims() -> list[Claim]:
    std_nrf_over_rf = _success_gap(("standard", "non_robust"), ("standard", "robust"))
    nrf_drop = _success_gap(("standard", "non_robust"), ("adversarial", "non_robust"))
    adv_rf_over_nrf = _success_gap(("adversarial", "robust"), ("adversarial", "non_robust"))

    s_n, s_r = _table2_mean("standard", "non_robust"), _table2_mean("standard", "robust")
    a_n, a_r = _table2_mean("adversarial", "non_robust"), _table2_mean("adversarial", "robust")
    return [
        Claim("standard_nrf_beats_rf", "on the standard model NRF-PGD succeeds more than RF-PGD "
              "(effect: success NRF - RF, mean over pairs)", round(s_n - s_r, 4),
              f"Table 2 CIFAR-10 Std: NRF {s_n:.1%} vs RF {s_r:.1%}", "mean > 0 and > std",
              std_nrf_over_rf),
        Claim("nrf_fails_after_adversarial", "NRF-PGD mostly fails on the adversarially "
              "trained model (effect: NRF success standard - adversarial)", round(s_n - a_n, 4),
              f"Table 2: NRF {s_n:.1%} (Std) vs {a_n:.1%} (Adv)", "mean > 0 and > std", nrf_drop),
        Claim("adversarial_rf_beats_nrf", "on the adversarial model RF-PGD succeeds more than "
              "NRF-PGD (effect: success RF - NRF)", round(a_r - a_n, 4),
              f"Table 2 Adv: RF {a_r:.1%} vs NRF {a_n:.1%}", "mean > 0 and > std",
              adv_rf_over_nrf),
    ]


FEATURE_ATTACKS = Reproduction(
    name="feature_attacks", paper="B", figure="Table 2 (NRF-PGD / RF-PGD targeted success)",
    title="Targeted attacks restricted to non-robust (NRF) or robust (RF) feature subspaces, "
          "standard vs adversarially trained (digits; the paper: CIFAR-10)",
    sizes={"quick": _fattack_size(20, [0, 1], 50, 20, minutes=2.0),
           "full": _fattack_size(100, [0, 1, 2, 3, 4], 200, 30, minutes=20.0)},
    claims=_fattack_claims())


# --------------------------------------------------------------------------- C: separation, width


SEPARATION_PAPER = {"mnist": (0.1, 0.737, 0.812), "cifar10": (0.031, 0.212, 0.220),
                    "svhn": (0.031, 0.094, 0.110), "restricted_imagenet": (0.005, 0.180, 0.224)}


def _sep_size(eps: float, minutes: float) -> SizeSpec:
    base = {"name": "data separation", "tags": ["reproduction", "separation"],
            "data": {"kind": "image", "dataset": "digits", "binary": None},
            "learner": {"kind": "mlp"},
            "study": {"kind": "separation", "norms": ["linf", "l2"], "labels": "fine",
                      "eps": eps}}
    return SizeSpec(base=base, grid={}, seeds=[0], params={"eps": eps}, minutes=minutes)


def _sep_rows(p: PointResult, norm: str) -> list[dict]:
    if not p.summaries:
        return []
    return [r for r in (p.summaries[0].get("separation") or {}).get("rows", []) if r["norm"] == norm]


def _sep_claims() -> list[Claim]:
    eps_m, tt_m, te_m = SEPARATION_PAPER["mnist"]

    def train_sep(points, params):
        vals = [r["train_train_min"] / (2 * params["eps"]) for r in _sep_rows(points[0], "linf")]
        return vals, bool(vals) and min(vals) > 1

    def test_sep(points, params):
        vals = [r["test_train_min"] / (2 * params["eps"]) for r in _sep_rows(points[0], "linf")]
        return vals, bool(vals) and min(vals) > 1

    return [
        Claim("train_separated", "real data is separated: min l_inf train-train distance "
              "between classes exceeds 2 eps (effect: distance / 2 eps)",
              round(tt_m / (2 * eps_m), 3), f"MNIST: {tt_m} at eps {eps_m} (Table 1)",
              "> 1", train_sep),
        Claim("test_separated", "test points are as far from other classes' training points "
              "(effect: min l_inf test-train distance / 2 eps)", round(te_m / (2 * eps_m), 3),
              f"MNIST: {te_m} at eps {eps_m} (Table 1)", "> 1", test_sep),
    ]


SEPARATION = Reproduction(
    name="separation", paper="C", figure="Table 1 (data separation)",
    title="Data separation: min distance between differently labelled points vs 2 eps "
          "(digits, eps 0.1; the paper: MNIST / CIFAR-10 / SVHN / Restricted ImageNet)",
    sizes={"quick": _sep_size(0.1, 0.2), "full": _sep_size(0.1, 0.2)},
    claims=_sep_claims())


def _width_size(widths: list[int], epochs: int, seeds: list[int], minutes: float) -> SizeSpec:
    base = {"name": "width sweep", "tags": ["reproduction", "width-sweep"],
            "data": {"kind": "separated", "d": 50, "n_train": 100, "n_test": 500, "eps": 0.05,
                     "norm": "linf", "variant": "linear"},
            "learner": {"kind": "mlp", "widths": [widths[0]]},
            "training": {"mode": "adversarial", "epochs": epochs, "batch_size": 100,
                         "optimizer": {"kind": "adam", "lr": 0.003},
                         "adversary": {"kind": "pgd", "norm": "linf", "radii": [0.045],
                                       "steps": 10}},
            "evaluation": {"every": max(1, epochs // 10), "attack_every": [epochs],
                           "attack_train": True, "n_attack": 200, "record": [],
                           "attacks": [{"kind": "pgd", "norm": "linf", "radii": [0.045],
                                        "steps": 20}]}}
    return SizeSpec(base=base, grid={"learner.widths": [[w] for w in widths]}, seeds=seeds,
                    params={"radius": 0.045, "widths": widths}, minutes=minutes)


def _width_claims() -> list[Claim]:
    def key(split, params):
        return f"{split}/robust_accuracy/min_linf@{format_radius(params['radius'])}"

    def by_width(points, params, split):
        return [seed_values(p, lambda f: f.get(key(split, params))) for p in points]

    def train_grows(points, params):
        per = by_width(points, params, "train")
        vals = [w - n for w, n in zip(per[-1], per[0])]
        return vals, bool(vals) and mean(per[-1]) >= 0.9 and mean(vals) >= 0

    def gap(points, params):
        tr, te = by_width(points, params, "train")[-1], by_width(points, params, "test")[-1]
        vals = [a - b for a, b in zip(tr, te)]
        return vals, bool(vals) and mean(vals) > 0.05

    def clean_easy(points, params):
        vals = seed_values(points[0], lambda f: f.get("test/clean_accuracy"))
        return vals, bool(vals) and mean(vals) >= 0.9

    return [
        Claim("robust_train_fits", "robust training accuracy reaches ~100% with width (effect: "
              "robust train acc. widest - narrowest)", None,
              "Thm: O(Nd) parameters robustly fit N points", "widest >= 0.9, gain >= 0",
              train_grows),
        Claim("robust_generalization_gap", "robust test accuracy stays below robust train "
              "accuracy at the widest net (effect: robust train - robust test)",
              round(1.0 - 0.458, 3),
              "CIFAR-10 ResNet adversarial training: robust test 45.8% (train ~100%)",
              "mean gap > 0.05", gap),
        Claim("clean_is_easy", "clean generalisation is easy even at the narrowest width "
              "(effect: clean test accuracy)", 0.952, "CIFAR-10 ResNet clean test 95.2%",
              "mean >= 0.9", clean_easy),
    ]


WIDTH_SWEEP = Reproduction(
    name="width_sweep", paper="C", figure="width sweep (robust train vs robust test)",
    title="Robust generalisation needs expressive power: robust train vs robust test accuracy "
          "as the width grows (separated linear data, l_inf adversarial training)",
    sizes={"quick": _width_size([16, 256], 60, [0, 1], minutes=2.0),
           "full": _width_size([16, 64, 256, 1024, 2048], 150, [0, 1, 2, 3, 4], minutes=30.0)},
    claims=_width_claims(), series=("train/robust_accuracy/",))


CATALOGUE: dict[str, Reproduction] = {r.name: r for r in (
    FEATURE_AVERAGING, PATCH_TRAJECTORIES, FEATURE_ATTACKS, SEPARATION, WIDTH_SWEEP)}


def get(name: str) -> Reproduction:
    """The entry called `name`; KeyError naming the known ones."""
    try:
        return CATALOGUE[name]
    except KeyError:
        raise KeyError(f"unknown reproduction {name!r}; one of {sorted(CATALOGUE)}") from None


# --------------------------------------------------------------------------- verdict


def verdict(entry: Reproduction, size_name: str, points: list[PointResult]) -> dict[str, Any]:
    """Every claim of the entry on these results: our effect (mean, std, per seed), the paper's
    number, the criterion and holds. A claim that cannot be evaluated (a failed member, a
    missing number) does not hold and says why."""
    params = entry.sizes[size_name].params
    claims = []
    for claim in entry.claims:
        row: dict[str, Any] = {"key": claim.key, "claim": claim.text, "paper": claim.paper,
                               "paper_source": claim.paper_text, "criterion": claim.criterion}
        try:
            values, holds = claim.evaluate(points, params)
            row.update({"ours": stats(values), "holds": bool(holds)})
        except (KeyError, IndexError, ZeroDivisionError, TypeError) as exc:
            row.update({"ours": stats([]), "holds": False, "error": f"{type(exc).__name__}: {exc}"})
        claims.append(row)
    return {"name": entry.name, "size": size_name, "paper": entry.paper, "figure": entry.figure,
            "title": entry.title, "params": params, "claims": claims,
            "holds": all(c["holds"] for c in claims),
            "points": [p.to_json() for p in points]}


# --------------------------------------------------------------------------- local runs


def _wanted(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name.startswith(p) for p in prefixes)


def run_local(name: str, size_name: Size = "quick", device: str | None = None,
              progress: bool = True) -> tuple[list[PointResult], list[dict[str, Any]]]:
    """Run an entry in this process, one grid point after another (seeds batched). Returns
    (points, matrices): the final cosine matrices {"point", "name", "seed", "values"} for the
    figures."""
    from advcore.observe import NullObserver
    from advcore.run import run_experiment
    from advcore.spec import parse_spec

    entry = get(name)
    size = entry.sizes[size_name]

    class Collect(NullObserver):
        def __init__(self) -> None:
            self.last: dict[tuple[str, int], tuple[int, float]] = {}
            self.series: dict[str, dict[int, list[list[float]]]] = {}
            self.matrices: dict[tuple[str, int], tuple[int, Any]] = {}

        def on_metrics(self, records) -> None:
            for r in records:
                if _wanted(r.name, entry.series):
                    prev = self.last.get((r.name, r.seed))
                    if prev is None or r.step >= prev[0]:
                        self.last[(r.name, r.seed)] = (r.step, float(r.value))
                if _wanted(r.name, entry.trajectories):
                    self.series.setdefault(r.name, {}).setdefault(r.seed, []).append(
                        [r.step, float(r.value)])

        def on_matrices(self, records) -> None:
            for r in records:
                prev = self.matrices.get((r.name, r.seed))
                if prev is None or r.step >= prev[0]:
                    self.matrices[(r.name, r.seed)] = (r.step, r)

    points: list[PointResult] = []
    matrices: list[dict[str, Any]] = []
    grid = points_of(size)
    for i, point in enumerate(grid):
        if progress:
            print(f"[{i + 1}/{len(grid)}] {entry.name} ({size_name}) "
                  + (", ".join(f"{k}={v}" for k, v in point.items()) or "base"), flush=True)
        spec = parse_spec(member_spec(entry, size_name, point))
        observer = Collect()
        summary = run_experiment(spec, observer, device=device)
        seeds = spec.seed_list
        per = summary.per_seed() if summary.seeds else [summary]
        finals = []
        for seed, seed_summary in zip(seeds, per):
            numbers = seed_summary.metrics()
            numbers.update({n: v for (n, s), (_, v) in observer.last.items() if s == seed})
            finals.append(numbers)
        points.append(PointResult(point=point, seeds=seeds, finals=finals,
                                  summaries=[summary.to_stored()], series=observer.series))
        matrices += [{"point": point, "name": n, "seed": s, "values": rec.values,
                      "rows": rec.row_labels, "cols": rec.col_labels}
                     for (n, s), (_, rec) in observer.matrices.items()]
    return points, matrices

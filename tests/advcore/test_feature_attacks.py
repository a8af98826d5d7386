"""Robust / non-robust feature attacks on digits (science.md §B item 3, the seed's Table 2):
features reconstructed from a standard model (non-robust) and an adversarially trained one
(robust); NRF-PGD / RF-PGD are targeted PGD restricted to those subspaces. Run as a spec
(study: feature_attacks) through run_experiment."""

from __future__ import annotations

import pytest
import torch

from advcore.features import class_bases, per_class_examples, reconstruct
from advcore.learners import build_learner
from advcore.observe import CollectingObserver
from advcore.run import run_experiment
from advcore.spec import parse_spec

PAIRS = [[3, 8], [8, 3], [1, 7], [7, 1]]
SPEC = {"seeds": [0, 1], "data": {"kind": "image", "dataset": "digits", "binary": None},
        "learner": {"kind": "mlp", "widths": [128, 32]},
        "training": {"optimizer": {"kind": "adam", "lr": 0.01}, "epochs": 100},
        "evaluation": {"every": 50, "record": []},
        "study": {"kind": "feature_attacks", "pairs": PAIRS,
                  "adversary": {"kind": "pgd", "norm": "l2", "radii": [0.5], "steps": 10},
                  "attack": {"kind": "pgd", "norm": "l2", "radii": [1.0], "steps": 30},
                  "reconstruction": {"steps": 200, "n_per_class": 20, "n_directions": 4}}}


@pytest.fixture(scope="module")
def study():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: extra threads only contend on the 2-core CI box
    observer = CollectingObserver()
    summary = run_experiment(parse_spec(SPEC), observer, device="cpu").to_stored()
    torch.set_num_threads(threads)
    return summary, observer


def _mean_success(summary, model, subspace):
    rows = [r for r in summary["feature_attacks"] if r["model"] == model and r["subspace"] == subspace]
    assert len(rows) == len(PAIRS)
    return sum(r["success"] for r in rows) / len(rows)


def test_both_models_learn_digits(study):
    summary, _ = study
    assert summary["models"]["standard"]["clean_accuracy"]["test"] > 0.93
    assert summary["models"]["adversarial"]["clean_accuracy"]["test"] > 0.9
    assert summary["clean_accuracy"] == summary["models"]["standard"]["clean_accuracy"]


def test_nrf_pgd_beats_rf_pgd_on_the_standard_model(study):
    summary, _ = study
    nrf, rf = _mean_success(summary, "standard", "non_robust"), _mean_success(summary, "standard", "robust")
    assert nrf >= rf + 0.05, (nrf, rf)  # measured 0.69 vs 0.58 (5 seeds: 0.67 vs 0.58)


def test_adversarial_training_lowers_nrf_pgd_success(study):
    summary, _ = study
    std, adv = _mean_success(summary, "standard", "non_robust"), _mean_success(summary, "adversarial", "non_robust")
    assert std >= adv + 0.25, (std, adv)  # measured 0.69 -> 0.26


def test_rf_pgd_beats_nrf_pgd_on_the_adversarial_model(study):
    summary, _ = study
    nrf, rf = _mean_success(summary, "adversarial", "non_robust"), _mean_success(summary, "adversarial", "robust")
    assert rf >= nrf + 0.05, (nrf, rf)  # measured 0.36 vs 0.26


def test_table_rows_carry_per_seed_values_and_metrics_are_streamed(study):
    summary, observer = study
    row = summary["feature_attacks"][0]
    assert len(row["per_seed"]) == 2 and row["success"] == pytest.approx(sum(row["per_seed"]) / 2)
    assert observer.series("feature_attacks/standard/non_robust/3to8@1", seed=1) == [(200, row["per_seed"][1])]
    assert observer.series("adversarial/test/clean_accuracy", seed=0)[-1][0] == 200  # second phase offset
    assert observer.progress[-1] == (200, 200)


def test_reconstruction_matches_the_representation_from_noise():
    spec = parse_spec({"data": {"kind": "image"}, "learner": {"kind": "mlp", "widths": [32, 8]}})
    model = build_learner(spec, (1, 8, 8), 10, [0, 1])
    x = torch.rand(2, 6, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    gens = [torch.Generator().manual_seed(s) for s in (0, 1)]
    x_hat, x0 = reconstruct(model.representation, x, steps=150, step_size=0.2, box=(0.0, 1.0), generators=gens)
    target = model.representation(x)

    def rel(z):
        return ((model.representation(z) - target).norm(dim=-1) / target.norm(dim=-1)).mean()

    assert rel(x_hat) < 0.25 * rel(x0) and x_hat.min() >= 0 and x_hat.max() <= 1


def test_per_class_examples_and_bases_are_orthonormal():
    y = torch.tensor([[2, 0, 1, 0, 2, 1], [1, 1, 0, 2, 0, 2]])
    idx = per_class_examples(y, 3, 2)
    assert torch.equal(y.gather(1, idx.flatten(1)).reshape(2, 3, 2), torch.arange(3)[None, :, None].expand(2, 3, 2))
    bases = class_bases(torch.randn(2, 3, 5, 1, 4, 4), 3)  # (S, k, K, *F)
    flat = bases.flatten(3)
    assert bases.shape == (2, 3, 3, 1, 4, 4)
    assert torch.allclose(flat @ flat.transpose(-1, -2), torch.eye(3).expand(2, 3, 3, 3), atol=1e-5)
    with pytest.raises(ValueError, match="per class"):
        per_class_examples(y, 3, 3)


def _tiny(**study) -> dict:
    spec = {**SPEC, "seeds": [0], "learner": {"kind": "mlp", "widths": [8]},
            "training": {"optimizer": {"kind": "adam", "lr": 0.01}, "epochs": 3}}
    spec["data"] = {"kind": "image", "dataset": "digits", "binary": None, "classes": [1, 3, 7, 8]}
    spec["study"] = {**SPEC["study"], **study}
    return spec


def test_a_pair_outside_the_kept_classes_is_rejected_before_training():
    with pytest.raises(ValueError, match=r"pair \[3, 5\]"):
        run_experiment(parse_spec(_tiny(pairs=[[3, 5]])), device="cpu")


def test_a_study_stops_when_the_observer_asks():
    from advcore.observe import Canceled

    class StopAtOnce(CollectingObserver):
        def should_stop(self) -> bool:
            return bool(self.progress)

    observer = StopAtOnce()
    with pytest.raises(Canceled):
        run_experiment(parse_spec(_tiny()), observer, device="cpu")
    assert observer.progress == [(1, 6)]  # two models x 3 epochs

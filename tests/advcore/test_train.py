"""Training: objectives, tasks, optimisers, adversarial mode, determinism and seed batching."""

from __future__ import annotations

import pytest
import torch

from advcore.observe import CollectingObserver
from advcore.run import run_experiment
from advcore.spec import parse_spec


def _spec(**overrides) -> dict:
    spec = {
        "seed": 0,
        "data": {"kind": "multi_cluster", "d": 30, "k": 4, "n_train": 96, "n_test": 64},
        "learner": {"kind": "two_layer_relu", "width": 8, "init_scale": 0.1},
        "training": {"epochs": 6, "optimizer": {"kind": "gd", "lr": 0.1}},
        "evaluation": {"every": 3, "record": ["correlations", "weight_norms", "margins"]},
    }
    for key, value in overrides.items():
        spec[key] = {**spec[key], **value} if isinstance(value, dict) else value
    return spec


def _run(spec: dict) -> tuple[dict, CollectingObserver]:
    observer = CollectingObserver()
    return run_experiment(parse_spec(spec), observer, device="cpu"), observer


def _by_key(observer: CollectingObserver) -> dict[tuple[str, int, int], float]:
    return {(r.name, r.step, r.seed): r.value for r in observer.metrics}


def test_gd_training_lowers_the_logistic_loss_and_fits_the_clusters():
    summary, obs = _run(_spec(training={"epochs": 40, "optimizer": {"kind": "gd", "lr": 0.5}}))
    losses = [v for _, v in obs.series("train/loss")]
    assert losses[-1] < 0.5 * losses[0]
    assert summary.clean_accuracy.test >= 0.95


@pytest.mark.parametrize("optimizer", [
    {"kind": "sgd", "lr": 0.1, "momentum": 0.9},
    {"kind": "adam", "lr": 0.01, "weight_decay": 1e-4},
])
def test_minibatch_optimizers_train(optimizer):
    summary, obs = _run(_spec(training={"epochs": 10, "optimizer": optimizer, "batch_size": 16}))
    losses = [v for _, v in obs.series("train/loss")]
    assert losses[-1] < 0.7 * losses[0]
    assert summary.clean_accuracy.train >= 0.9


def test_evaluation_runs_at_init_every_n_epochs_and_at_the_last_epoch():
    _, obs = _run(_spec(training={"epochs": 7}))
    assert [step for step, _ in obs.series("test/clean_accuracy")] == [0, 3, 6, 7]
    assert [step for step, _ in obs.series("corr/cluster/0")] == [0, 3, 6, 7]
    assert obs.progress == [(e, 7) for e in range(1, 8)]


def test_fine_labels_report_the_binary_readout_and_fine_prefixed_k_class_accuracy():
    summary, obs = _run(_spec(training={"labels": "fine", "epochs": 30}))
    names = {r.name for r in obs.metrics}
    assert {"fine/train/clean_accuracy", "fine/test/clean_accuracy", "test/clean_accuracy"} <= names
    assert summary.fine.clean_accuracy.test >= 0.9
    assert summary.clean_accuracy.test >= summary.fine.clean_accuracy.test
    assert len(obs.matrix("cosine/cluster")) == 4 * 8  # width neurons per output


def test_margins_and_weight_norms_are_recorded():
    _, obs = _run(_spec())
    names = {r.name for r in obs.metrics}
    assert {"test/margin_mean", "test/margin_min", "test/margin_median",
            "weights/norm_mean", "weights/norm_max"} <= names
    norms = obs.series("weights/norm_max")
    assert norms[-1][1] > norms[0][1]  # training grows the weights from a small init


def test_adversarial_training_raises_robust_accuracy_over_standard_training():
    attack = {"kind": "pgd", "norm": "l2", "radii": [3.0], "steps": 10}  # above sqrt(d/k) = 2.7
    common = {"data": {"kind": "multi_cluster", "d": 30, "k": 4, "n_train": 200, "n_test": 200},
              "evaluation": {"every": 40, "attacks": [attack], "record": []}}
    standard, _ = _run(_spec(training={"epochs": 40, "optimizer": {"kind": "gd", "lr": 0.2}}, **common))
    adversarial, _ = _run(_spec(training={"epochs": 40, "optimizer": {"kind": "gd", "lr": 0.2},
                                          "mode": "adversarial", "adversary": attack}, **common))
    std_acc = standard.robust_accuracy[0].accuracy
    adv_acc = adversarial.robust_accuracy[0].accuracy
    assert adv_acc >= std_acc + 0.2, (std_acc, adv_acc)


def test_same_spec_and_seed_give_identical_metrics():
    spec = _spec(training={"optimizer": {"kind": "sgd", "lr": 0.1}, "batch_size": 32},
                 evaluation={"attacks": [{"kind": "pgd", "radii": [1.0, 2.0], "steps": 5}]})
    _, first = _run(spec)
    _, second = _run(spec)
    assert _by_key(first) == _by_key(second)
    assert [m.values for m in first.matrices] == [m.values for m in second.matrices]


@pytest.mark.parametrize("training", [
    {"optimizer": {"kind": "gd", "lr": 0.1}},
    {"optimizer": {"kind": "adam", "lr": 0.01}, "batch_size": 32, "labels": "fine"},
    {"optimizer": {"kind": "sgd", "lr": 0.1, "momentum": 0.5}, "batch_size": 32, "mode": "adversarial",
     "adversary": {"kind": "pgd", "radii": [1.0], "steps": 3}},
])
def test_batched_seeds_match_separate_runs(training):
    attacks = [{"kind": "pgd", "radii": [1.0, 3.0], "steps": 10, "random_start": False},
               {"kind": "pgd", "radii": [2.0], "steps": 5, "restarts": 2, "name": "pgd_random_start"},
               {"kind": "feature_direction", "radii": [1.0, 3.0]}]
    spec = _spec(training=training, evaluation={"attacks": attacks})
    _, batched = _run({**spec, "seeds": [3, 4, 5]})
    batched_values = _by_key(batched)
    for seed in (3, 4, 5):
        _, alone = _run({**spec, "seed": seed})
        alone_values = _by_key(alone)
        assert alone_values, "nothing recorded"
        for key, value in alone_values.items():
            assert batched_values[key] == pytest.approx(value, abs=1e-4), key
        batched_cos = [m.values for m in batched.matrices if m.seed == seed]
        alone_cos = [m.values for m in alone.matrices]
        assert torch.allclose(torch.tensor(batched_cos), torch.tensor(alone_cos), atol=1e-4)


def test_batched_summary_averages_seeds_and_lists_each():
    summary, _ = _run({**_spec(), "seeds": [0, 1]})
    per_seed = [s.clean_accuracy.test for s in summary.seeds]
    assert [s.seed for s in summary.seeds] == [0, 1]
    assert summary.clean_accuracy.test == pytest.approx(sum(per_seed) / 2)

"""ResNet-18-style learner at tiny size on CPU (the full size is for GPU runs): forward /
backward, per-seed BatchNorm (batched seeds == separate models), and a run through the runner."""

from __future__ import annotations

import pytest
import torch

from advcore.learners import build_learner
from advcore.run import run_experiment
from advcore.spec import parse_spec

TINY = {"kind": "resnet18", "width": 4, "blocks": [1, 1]}


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny convs: extra threads only contend on the 2-core CI box."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _spec(learner=TINY):
    return parse_spec({"data": {"kind": "image"}, "learner": learner}).resolve()


def test_tiny_resnet_runs_forward_and_backward_on_cpu():
    model = build_learner(_spec(), (3, 16, 16), 10, [0, 1])
    x = torch.rand(2, 5, 3, 16, 16)
    out = model(x)
    assert out.shape == (2, 5, 10) and model.representation(x).shape == (2, 5, 8)
    out.logsumexp(-1).sum().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert model.first_layer().shape == (2, 4, 27) and model.readout_weights().shape == (2, 10, 8)


def test_default_resnet18_has_the_resnet18_layout():
    model = build_learner(_spec({"kind": "resnet18"}), (3, 32, 32), 10, [0])
    convs = [m for m in model.modules() if type(m).__name__ == "SeedConv"]
    assert len(convs) == 1 + 2 * 8 + 3  # stem + 8 BasicBlocks of 2 convs + 3 projection shortcuts
    assert 11.0e6 < sum(p.numel() for p in model.parameters()) < 11.4e6  # ResNet-18: ~11.2M


def test_batched_seeds_equal_separate_models_in_train_and_eval_mode():
    batched = build_learner(_spec(), (1, 8, 8), 3, [4, 5])
    x = torch.rand(2, 6, 1, 8, 8)
    out_train = batched(x)  # train mode: per-seed batch statistics, running stats updated once
    batched.eval()
    out_eval = batched(x)
    for s, seed in enumerate([4, 5]):
        alone = build_learner(_spec(), (1, 8, 8), 3, [seed])
        assert torch.allclose(alone(x[s:s + 1])[0], out_train[s], atol=1e-5)
        alone.eval()
        assert torch.allclose(alone(x[s:s + 1])[0], out_eval[s], atol=1e-5)


def test_resnet_trains_through_the_runner_on_digits():
    spec = parse_spec({"seeds": [0, 1], "data": {"kind": "image", "dataset": "digits", "binary": None,
                                                  "n_train": 200, "n_test": 100},
                       "learner": TINY, "training": {"optimizer": {"kind": "adam", "lr": 0.01},
                                                     "epochs": 4, "batch_size": 50},
                       "evaluation": {"every": 4, "record": ["decoupling"]}})
    summary = run_experiment(spec, device="cpu").to_stored()
    assert len(summary["seeds"]) == 2 and summary["clean_accuracy"]["train"] > 0.3  # chance: 0.1
    assert "class_weights/mean_max_cosine" in summary["decoupling"]

"""advcore.cost: every kind has a cost function, estimates agree with measurement on every
example, abusive specs are refused by the spec's hard bounds or priced far above any limit, and
every term names the field that drives it."""

from __future__ import annotations

import contextlib
import json
import typing
from pathlib import Path

import pytest
from pydantic import BaseModel, ValidationError

from advcore import spec as S
from advcore.cost import (DATA_COSTS, data_cost, estimate, matrix_bytes, metric_bytes,
                          summary_bytes)
from advcore.observe import CollectingObserver
from advcore.run import run_experiment
from advcore.spec import parse_spec
from devtools.measured import SHRUNK, fake_image_files, measure, shrunk, single_thread

EXAMPLES = sorted(Path(__file__).resolve().parents[2].glob("examples/*.json"))
GB = 2**30


def _union_models(union) -> list[type[BaseModel]]:
    members = typing.get_args(typing.get_args(union)[0])
    return [m for m in members if isinstance(m, type) and issubclass(m, BaseModel)]


def _kind(model: type[BaseModel]) -> str:
    return model.model_fields["kind"].default


# ----------------------------------------------------------------------------- registries


def test_every_data_kind_has_a_cost_function():
    data_cost(S.MultiClusterData())  # loads the builders, which register their costs
    assert {_kind(m) for m in _union_models(S.DataSpec)} <= set(DATA_COSTS)


def test_every_learner_kind_implements_cost():
    from advcore.learners import LEARNERS, _load
    from advcore.learners.base import BatchedModel

    _load()
    for model in _union_models(S.LearnerSpec):
        cls = LEARNERS[_kind(model)]
        assert cls.cost.__func__ is not BatchedModel.cost.__func__, f"{cls.__name__} has no cost"


def test_every_attack_kind_has_a_cost_function():
    from advcore.attacks import ATTACK_COSTS

    kinds = typing.get_args(S.AttackSpec.model_fields["kind"].annotation)
    assert set(kinds) <= set(ATTACK_COSTS)


def test_every_study_kind_has_a_cost_function():
    from advcore.studies import STUDY_COSTS

    assert {_kind(m) for m in _union_models(S.StudySpec)} <= set(STUDY_COSTS)


# ----------------------------------------------------------------------------- measurement


@contextlib.contextmanager
def _example(name: str, tmp_path: Path):
    body, files = shrunk(name, json.loads(next(p for p in EXAMPLES if p.stem == name).read_text()))
    with (fake_image_files(body["data"]["dataset"], files, tmp_path) if files
          else contextlib.nullcontext()):
        yield parse_spec(body)


def test_every_example_has_a_measurable_size():
    assert {p.stem for p in EXAMPLES} <= set(SHRUNK), "add new examples to SHRUNK"


@pytest.mark.parametrize("name", [p.stem for p in EXAMPLES])
def test_estimate_is_within_2x_of_measured_flops_and_peak_memory(name, tmp_path):
    with _example(name, tmp_path) as spec:
        cost = estimate(spec)
        measured = measure(spec)
    assert 0.5 <= cost.flops / measured.flops <= 2, (cost.flops, measured.flops)
    assert 0.5 <= cost.peak_bytes / measured.peak_bytes <= 2, (
        cost.peak_bytes, measured.peak_bytes, cost.peak_phase)


@pytest.mark.parametrize("name", ["quickstart", "feature_averaging_fine", "patch_adversarial",
                                  "digits_10class", "digits_width_16"])
def test_stored_bytes_follow_the_records_a_run_streams(name, tmp_path):
    """Stored bytes = what the observer receives (metric points and matrices) + the summary."""
    with _example(name, tmp_path) as spec:
        cost = estimate(spec)
        observer = CollectingObserver()
        with single_thread():
            run_experiment(spec, observer, device="cpu")
        data = data_cost(spec.resolve().data)
    series = {(r.name, r.seed) for r in observer.metrics}
    streamed = metric_bytes(len(observer.metrics), len(series)) + sum(
        matrix_bytes(len(m.values), len(m.values[0])) for m in observer.matrices)
    assert cost.stored_bytes - summary_bytes(spec.resolve(), data) == pytest.approx(streamed)
    n_steps = len({r.step for r in observer.metrics})
    assert cost.n_evaluations == n_steps


# ----------------------------------------------------------------------------- abuse

# The issue's hostile specs: each is refused by a hard bound of the spec, at the field's path
REFUSED = {
    "16 GB data set": ({"data": {"kind": "multi_cluster", "d": 100_000, "n_train": 40_000}},
                       ("data", "multi_cluster", "d")),
    "64 seeds of a 1.6 GB data set": (
        {"seeds": list(range(64)),
         "data": {"kind": "multi_cluster", "d": 20_000, "n_train": 20_000, "n_test": 1000}},
        ("seeds",)),
    "2000-layer MLP": ({"learner": {"kind": "mlp", "widths": [64] * 2000}},
                       ("learner", "mlp", "widths")),
    "500-layer CNN": ({"data": {"kind": "image"}, "learner": {"kind": "cnn", "channels": [8] * 500}},
                      ("learner", "cnn", "channels")),
    "ResNet-18 of width 10^6": ({"data": {"kind": "image"},
                                 "learner": {"kind": "resnet18", "width": 10**6}},
                                ("learner", "resnet18", "width")),
    "ResNet-18 with 10^5 blocks": ({"data": {"kind": "image"},
                                    "learner": {"kind": "resnet18", "blocks": [10**5]}},
                                   ("learner", "resnet18", "blocks", 0)),
    "patch model with P = 10^6": ({"data": {"kind": "patch", "patches": 10**6},
                                   "learner": {"kind": "patch_cnn"}}, ("data", "patch", "patches")),
    "P x d = 2^24": ({"data": {"kind": "patch", "patches": 4096, "d": 4096},
                      "learner": {"kind": "patch_cnn"}}, ("data", "patch", "patches")),
    "k = 20000 clusters": ({"data": {"kind": "multi_cluster", "d": 20_000, "k": 20_000}},
                           ("data", "multi_cluster", "k")),
    "SGD with batch 1 for 2e10 steps": (
        {"data": {"kind": "multi_cluster", "n_train": 20_000},
         "training": {"optimizer": {"kind": "sgd"}, "batch_size": 1, "epochs": 1000}},
        ("training", "batch_size")),
    "PGD with 10^9 steps": ({"evaluation": {"attacks": [{"steps": 10**9}]}},
                            ("evaluation", "attacks", 0, "steps")),
    "PGD with 10^9 restarts": ({"evaluation": {"attacks": [{"restarts": 10**9}]}},
                               ("evaluation", "attacks", 0, "restarts")),
    "400 attacks x 64 radii": ({"evaluation": {"attacks": [{"radii": [1.0] * 64}] * 400}},
                               ("evaluation", "attacks")),
    "10^4 steps x 100 restarts x 64 radii": (
        {"evaluation": {"attacks": [{"steps": 10**4, "restarts": 100, "radii": [1.0] * 64}]}},
        ("evaluation", "attacks", 0, "steps")),
    "10^9-step reconstruction study": (
        {"data": {"kind": "image", "binary": None},
         "study": {"kind": "feature_attacks", "reconstruction": {"steps": 10**9}}},
        ("study", "feature_attacks", "reconstruction", "steps")),
    "10^6 evaluations": ({"training": {"epochs": 10**6}, "evaluation": {"every": 1}},
                         ("evaluation", "every")),
}


@pytest.mark.parametrize("name", list(REFUSED))
def test_abusive_spec_is_refused_at_the_path_of_its_field(name):
    body, loc = REFUSED[name]
    with pytest.raises(ValidationError) as info:
        parse_spec(body)
    assert [tuple(e["loc"]) for e in info.value.errors()] == [loc]


def test_within_bounds_but_huge_specs_are_priced_far_above_any_limit():
    """What passes the hard bounds is left to the configurable limits: the estimate must make
    those binding, and name the field."""
    wide = estimate(parse_spec({"data": {"kind": "multi_cluster", "d": 100_000, "n_train": 1000},
                                "learner": {"kind": "two_layer_relu", "width": 65536}}))
    assert wide.peak_bytes > 50 * GB and wide.path("peak_bytes") == "learner.width"
    dense = estimate(parse_spec({  # the issue's 10^5 evaluations, k at its bound
        "data": {"kind": "multi_cluster", "d": 1000, "k": 1000},
        "learner": {"kind": "two_layer_relu", "width": 1000},
        "training": {"epochs": 100_000}, "evaluation": {"every": 1}}))
    assert dense.stored_bytes > 100 * GB and dense.n_evaluations == 100_001
    assert dense.path("stored_bytes") in ("evaluation.every", "data.k")
    strong = estimate(parse_spec({"evaluation": {"attacks": [
        {"steps": 10}, {"steps": 10}, {"steps": 10_000, "restarts": 100}]}}))
    assert strong.path("flops") == "evaluation.attacks[2].steps"
    assert strong.dominant("flops").name == "evaluation.attacks[2]"


def test_the_issues_storage_spec_is_priced_like_its_measured_growth():
    """d = k = width = 1000 with 21 evaluations grew the issue's SQLite store by 132 MB."""
    cost = estimate(parse_spec({"data": {"kind": "multi_cluster", "d": 1000, "k": 1000},
                                "learner": {"kind": "two_layer_relu", "width": 1000},
                                "training": {"epochs": 200}, "evaluation": {"every": 10}}))
    assert cost.n_evaluations == 21
    assert 66e6 < cost.stored_bytes < 264e6


def test_a_cifar10_resnet18_run_is_priced_at_its_real_size():
    """ResNet-18 on CIFAR-10: ~0.56 GMAC per image forward (He et al.'s CIFAR variant)."""
    from advcore.cost import model_cost

    model = model_cost(S.ResNet18(), (3, 32, 32), 10)
    assert 1.0e9 < model.forward < 1.2e9
    assert 10.5e6 < model.params < 11.5e6
    cost = estimate(parse_spec(next(p for p in EXAMPLES if p.stem == "cifar10_resnet18_2class")
                               .read_text()))
    # 30 epochs x 50000 images x (3F - F_first) dominates
    assert 4e15 < cost.flops < 8e15


def test_estimate_is_json_serialisable_with_a_path_per_quantity():
    cost = estimate(parse_spec(EXAMPLES[0].read_text()))
    out = json.loads(json.dumps(cost.as_dict()))
    assert set(out["dominant"]) == {"flops", "peak_bytes", "stored_bytes"}
    assert out["flops"] == cost.flops and out["terms"]["flops"]


@pytest.mark.parametrize("attack", [
    {"kind": "apgd", "norm": "l2", "radii": [0.01], "steps": 10},
    {"kind": "autoattack", "norm": "linf", "radii": [0.001], "steps": 10},
])
def test_apgd_kinds_are_priced_within_2x_where_no_point_breaks(attack, tmp_path):
    """At a radius no point can be broken at, APGD runs every step on every start: the worst
    case the estimate prices."""
    with _example("quickstart", tmp_path) as spec:
        body = spec.model_dump(mode="json")
        body["evaluation"]["attacks"] = [attack]
        body["training"]["epochs"] = 2
        body["evaluation"]["every"] = 2
        spec = parse_spec(body)
        cost = estimate(spec)
        measured = measure(spec)
    assert 0.5 <= cost.flops / measured.flops <= 2, (cost.flops, measured.flops)
    assert 0.5 <= cost.peak_bytes / measured.peak_bytes <= 2, (cost.peak_bytes, measured.peak_bytes)

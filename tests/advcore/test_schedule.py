"""The evaluation schedule (advcore.schedule): cheap records, attacks and stored matrices on
their own periods, the last epoch always complete, and the cost model counting the same."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from advcore.cost import estimate, matrix_bytes, metric_bytes, summary_bytes, data_cost
from advcore.observe import CollectingObserver
from advcore.run import run_experiment
from advcore.schedule import evaluation_plan
from advcore.spec import parse_spec

BASE = {
    "seed": 3,
    "data": {"kind": "multi_cluster", "d": 16, "k": 4, "n_train": 60, "n_test": 30},
    "learner": {"kind": "two_layer_relu", "width": 4},
    "training": {"epochs": 8, "optimizer": {"kind": "gd", "lr": 0.2}},
    "evaluation": {"every": 1, "n_attack": 30,
                   "attacks": [{"kind": "pgd", "norm": "l2", "radii": [0.5, 2.0], "steps": 3}]},
}


def spec_with(**evaluation):
    body = {**BASE, "evaluation": {**BASE["evaluation"], **evaluation}}
    return parse_spec(body)


def steps_of(observer, prefix):
    return sorted({r.step for r in observer.metrics if r.name.startswith(prefix)})


@pytest.fixture(scope="module")
def listed():
    """Records every epoch, attacks at epochs 2 and 5 only (and the last), matrices every 4."""
    spec = spec_with(attack_every=[2, 5], matrix_every=4)
    observer = CollectingObserver()
    summary = run_experiment(spec, observer, device="cpu")
    return spec, observer, summary


def test_attacks_run_at_the_listed_epochs_and_always_the_last(listed):
    _, observer, _ = listed
    assert steps_of(observer, "test/robust_accuracy/") == [2, 5, 8]
    assert steps_of(observer, "test/clean_accuracy") == list(range(9))  # records: every epoch


def test_matrices_are_thinned_to_multiples_of_matrix_every_and_the_last(listed):
    _, observer, _ = listed
    assert sorted({m.step for m in observer.matrices}) == [0, 4, 8]
    assert steps_of(observer, "corr/cluster/") == list(range(9))  # their scalars stay dense


def test_a_period_attacks_at_its_multiples_and_the_last_epoch():
    plan = evaluation_plan(spec_with(attack_every=3, record_every=2).evaluation, 8)
    assert sorted(plan.attacks) == [3, 6, 8]
    assert sorted(plan.records) == [0, 2, 4, 6, 8]
    assert sorted(plan.evaluated) == [0, 2, 3, 4, 6, 8]
    assert plan.matrices == plan.evaluated  # not thinned unless asked


def test_the_final_report_does_not_depend_on_the_attack_schedule(listed):
    _, _, sparse = listed
    dense = run_experiment(spec_with(matrix_every=4), CollectingObserver(), device="cpu")
    assert sparse["robust_accuracy"] == dense["robust_accuracy"]
    assert sparse["clean_accuracy"] == dense["clean_accuracy"]
    assert 0 < dense["robust_accuracy"][0]["accuracy"] < 1  # a radius that splits the points


def test_the_estimate_counts_the_scheduled_records_attacks_and_matrices(listed):
    spec, observer, _ = listed
    cost = estimate(spec)
    series = {(r.name, r.seed) for r in observer.metrics}
    streamed = metric_bytes(len(observer.metrics), len(series)) + sum(
        matrix_bytes(len(m.values), len(m.values[0])) for m in observer.matrices)
    resolved = spec.resolve()
    assert cost.stored_bytes - summary_bytes(resolved, data_cost(resolved.data)) == \
        pytest.approx(streamed)
    assert cost.n_evaluations == len(steps_of(observer, "test/clean_accuracy"))
    dense = estimate(spec_with())
    attack = [t for t in cost.flop_terms if t.name == "evaluation.attacks[0]"][0]
    dense_attack = [t for t in dense.flop_terms if t.name == "evaluation.attacks[0]"][0]
    assert attack.value == pytest.approx(dense_attack.value * 3 / 8)  # 3 of 8 epochs attacked
    assert ("evaluation.attack_every", 3) in {(f.path, f.value) for f in attack.factors}


@pytest.mark.parametrize("evaluation, loc", [
    ({"attack_every": [2, 9]}, ("evaluation", "attack_every", 1)),
    ({"attack_every": [0]}, ("evaluation", "attack_every")),
    ({"attack_every": list(range(1, 10_002))}, ("evaluation", "attack_every")),
    ({"record_every": 0}, ("evaluation", "record_every")),
])
def test_schedules_out_of_range_are_refused_at_their_field(evaluation, loc):
    with pytest.raises(ValidationError) as err:
        spec_with(**evaluation)
    assert any(tuple(e["loc"][:len(loc)]) == loc for e in err.value.errors()), err.value.errors()


def test_attack_every_bounds_the_number_of_evaluations():
    body = {**BASE, "training": {**BASE["training"], "epochs": 10**6},
            "evaluation": {**BASE["evaluation"], "every": 10**5, "attack_every": 1}}
    with pytest.raises(ValidationError) as err:
        parse_spec(body)
    assert err.value.errors()[0]["loc"][:2] == ("evaluation", "attack_every")

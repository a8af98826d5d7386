"""Separation tables: exact minimum distances between differently labelled points, checked
against a brute-force double loop, and the digits table through a spec (study: separation)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import advcore.separation as sep
from advcore.observe import CollectingObserver
from advcore.run import run_experiment
from advcore.spec import parse_spec


def _brute(x_a, y_a, x_b, y_b, norm):
    """min over pairs with different labels, one pair at a time (numpy, float64)."""
    a, b = x_a.reshape(len(x_a), -1).double().numpy(), x_b.reshape(len(x_b), -1).double().numpy()
    ord_ = np.inf if norm == "linf" else 2
    per_query = []
    for i in range(len(a)):
        per_query.append(min(np.linalg.norm(a[i] - b[j], ord=ord_)
                             for j in range(len(b)) if int(y_a[i]) != int(y_b[j])))
    return np.array(per_query)


@pytest.fixture(scope="module")
def digits_subset():
    from advcore.data import build_data
    from advcore.spec import ImageData

    data = build_data(ImageData(dataset="digits", binary=None, n_train=90, n_test=40), seed=3)
    return data.x_train, data.y_train, data.x_test, data.y_test


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("chunk", [7 * 90 + 5, 50])  # ragged row chunks / single rows, ragged columns
def test_nearest_other_label_matches_brute_force_on_a_digits_subset(digits_subset, norm, chunk, monkeypatch):
    x_tr, y_tr, x_te, y_te = digits_subset
    monkeypatch.setattr(sep, "MAX_CHUNK_ELEMENTS", chunk)
    dist, arg = sep.nearest_other_label(x_te, y_te, x_tr, y_tr, norm)
    reference = _brute(x_te, y_te, x_tr, y_tr, norm)
    assert np.allclose(dist.numpy(), reference, rtol=0, atol=1e-9)
    assert bool((y_tr[arg] != y_te).all())  # the returned neighbour really has another label


def test_separation_row_equals_brute_force_minima(digits_subset):
    x_tr, y_tr, x_te, y_te = digits_subset
    row = sep.separation(x_tr, y_tr, x_te, y_te, "l2")
    assert row["train_train_min"] == pytest.approx(_brute(x_tr, y_tr, x_tr, y_tr, "l2").min(), abs=1e-9)
    assert row["test_train_min"] == pytest.approx(_brute(x_te, y_te, x_tr, y_tr, "l2").min(), abs=1e-9)
    assert row["test_train_min"] <= row["test_train_q01"] <= row["test_train_median"]


def test_points_with_only_same_label_neighbours_are_infinitely_far():
    x = torch.zeros(3, 2)
    dist, arg = sep.nearest_other_label(x, torch.tensor([1, 1, 1]), x, torch.tensor([1, 1, 1]), "l2")
    assert torch.isinf(dist).all() and (arg == -1).all()


def test_digits_separation_study_reports_both_norms_through_the_runner():
    spec = parse_spec({"seed": 0, "data": {"kind": "image", "dataset": "digits", "binary": None},
                       "learner": {"kind": "mlp"},
                       "study": {"kind": "separation", "eps": 0.1}})
    observer = CollectingObserver()
    summary = run_experiment(spec, observer, device="cpu").to_stored()
    rows = {row["norm"]: row for row in summary["separation"]["rows"]}
    assert set(rows) == {"linf", "l2"} and summary["separation"]["eps"] == 0.1
    # digits pixels are multiples of 1/16: an l_inf distance is a multiple of 1/16 too
    assert rows["linf"]["train_train_min"] * 16 == pytest.approx(round(rows["linf"]["train_train_min"] * 16))
    # well separated: 2 * eps below the closest differently labelled pair (science.md §C)
    assert rows["linf"]["train_train_min"] > 2 * 0.1 and rows["l2"]["train_train_min"] > rows["linf"]["train_train_min"]
    assert observer.series("separation/linf/train_train_min") == [(1, rows["linf"]["train_train_min"])]
    assert observer.progress == [(1, 1)]

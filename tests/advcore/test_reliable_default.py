"""After adversarial training the evaluation always includes the reliable default: `autoattack`
at the training norm and radius, appended during spec resolution (and marked as added) when the user
did not list it; its cost is bounded with the rest of the evaluation."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from advcore.cost import estimate
from advcore.spec import MAX_ATTACKS, parse_spec

ADVERSARY = {"kind": "pgd", "norm": "linf", "radii": [0.1], "steps": 5}


def _spec(attacks, mode="adversarial", **training):
    return parse_spec({"data": {"kind": "multi_cluster", "d": 20, "k": 4, "n_train": 50,
                                "n_test": 20},
                       "training": {"mode": mode, "epochs": 2,
                                    "adversary": ADVERSARY if mode == "adversarial" else None,
                                    **training},
                       "evaluation": {"every": 2, "attacks": attacks}})


def test_adversarial_training_gets_autoattack_at_its_radius_marked_as_added():
    resolved = _spec([{"kind": "pgd", "norm": "linf", "radii": [0.05, 0.1]}]).resolve()
    *listed, default = resolved.evaluation.attacks
    assert [a.kind for a in listed] == ["pgd"]
    assert (default.kind, default.norm, default.radii, default.steps) == (
        "autoattack", "linf", [0.1], 100)
    assert default.added == "reliable_default" and listed[0].added is None
    assert default.label == "autoattack_linf"
    # resolving is idempotent and the canonical form states the added attack
    assert resolved.resolve() == resolved
    assert '"added":"reliable_default"' in _spec([]).canonical_json()


def test_a_listed_autoattack_at_the_training_radius_is_not_added_twice():
    listed = {"kind": "autoattack", "norm": "linf", "radii": [0.05, 0.1]}
    resolved = _spec([listed]).resolve()
    assert [(a.kind, a.added) for a in resolved.evaluation.attacks] == [("autoattack", None)]
    # another norm, or a subspace version, is not the reliable default
    other = _spec([{**listed, "norm": "l2"}]).resolve()
    assert [a.added for a in other.evaluation.attacks] == [None, "reliable_default"]


def test_standard_training_adds_nothing():
    assert _spec([], mode="standard").resolve().evaluation.attacks == []


def test_image_training_adds_the_default_in_the_pixel_box():
    spec = parse_spec({"data": {"kind": "image", "n_train": 100, "n_test": 50},
                       "learner": {"kind": "mlp", "widths": [16]},
                       "training": {"mode": "adversarial", "adversary": ADVERSARY}})
    (default,) = spec.resolve().evaluation.attacks
    assert default.kind == "autoattack" and default.box == [0.0, 1.0]


def test_the_default_counts_against_the_attack_bounds_at_the_attacks_path():
    full = [{"kind": "pgd", "radii": [1.0], "steps": 1}] * MAX_ATTACKS
    with pytest.raises(ValidationError) as info:
        _spec(full)
    assert [tuple(e["loc"]) for e in info.value.errors()] == [("evaluation", "attacks")]
    _spec(full, mode="standard")  # without adversarial training the list is within bounds


def test_the_default_is_priced():
    plain = estimate(_spec([], mode="standard", adversary=ADVERSARY))
    priced = estimate(_spec([]))
    names = [t.name for t in priced.terms("flops")]
    assert "evaluation.attacks[0]" in names, names
    assert priced.flops > plain.flops

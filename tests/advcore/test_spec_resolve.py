"""Resolving a spec once: `as_resolved()` returns the very spec `resolve()` made (pricing,
hashing and running it resolve nothing again), and resolves anything else, copies included."""

from __future__ import annotations

from advcore.spec import parse_spec

ADVERSARY = {"kind": "pgd", "norm": "linf", "radii": [0.1], "steps": 5}


def _spec(mode: str):
    return parse_spec({"data": {"kind": "multi_cluster", "d": 20, "k": 4, "n_train": 50,
                                "n_test": 20},
                       "training": {"mode": mode, "epochs": 2,
                                    "adversary": ADVERSARY if mode == "adversarial" else None}})


def test_as_resolved_returns_the_spec_resolve_made_and_resolves_any_other():
    spec = _spec("adversarial")
    resolved = spec.resolve()
    assert resolved.as_resolved() is resolved
    again = spec.as_resolved()
    assert again is not spec and again == resolved
    assert again.evaluation.attacks[-1].added == "reliable_default"
    assert parse_spec(resolved.model_dump(mode="json")).as_resolved() == resolved
    assert resolved.spec_hash() == spec.spec_hash()


def test_a_changed_copy_of_a_resolved_spec_is_resolved_again():
    standard = _spec("standard").resolve()
    assert standard.evaluation.attacks == []
    changed = standard.model_copy(update={"training": _spec("adversarial").training})
    (default,) = changed.as_resolved().evaluation.attacks
    assert default.added == "reliable_default"
    assert changed.spec_hash() == _spec("adversarial").spec_hash()

"""Configured size limits on a (schema-valid, resolved) spec: a lab server must not accept a job
that would exhaust its memory or run for a week by accident. Exceeding one is a 413 that names the
limit, its configured value and the JSON path of the field (service.errors.LimitExceeded)."""

from __future__ import annotations

from advcore.spec import ExperimentSpec
from lab.config import Settings
from service.errors import LimitExceeded


def _check(limit: str, value: int, maximum: int, loc: list[str | int]) -> None:
    if value > maximum:
        raise LimitExceeded(limit, value, maximum, ["body", *loc])


def check_limits(spec: ExperimentSpec, settings: Settings) -> None:
    """Raise LimitExceeded for the first configured limit the spec exceeds."""
    data, learner = spec.data, spec.learner
    if hasattr(data, "d"):
        _check("max_d", data.d, settings.max_d, ["data", "d"])
    n_train, n_test = getattr(data, "n_train", None), getattr(data, "n_test", None)
    if n_train is not None:
        _check("max_samples", n_train + (n_test or 0), settings.max_samples, ["data", "n_train"])
    if n_test is not None:
        _check("max_samples", (n_train or 0) + n_test, settings.max_samples, ["data", "n_test"])

    if learner.kind in ("two_layer_relu", "patch_cnn"):
        _check("max_width", learner.width, settings.max_width, ["learner", "width"])
    elif learner.kind == "mlp":
        for i, width in enumerate(learner.widths):
            _check("max_width", width, settings.max_width, ["learner", "widths", i])
    elif learner.kind == "cnn":
        for i, channels in enumerate(learner.channels):
            _check("max_width", channels, settings.max_width, ["learner", "channels", i])
        _check("max_width", learner.hidden, settings.max_width, ["learner", "hidden"])

    _check("max_epochs", spec.training.epochs, settings.max_epochs, ["training", "epochs"])
    for i, attack in enumerate(spec.evaluation.attacks):
        _check("max_radii", len(attack.radii), settings.max_radii,
               ["evaluation", "attacks", i, "radii"])
    _check("max_seeds", len(spec.seed_list), settings.max_seeds, ["seeds"])

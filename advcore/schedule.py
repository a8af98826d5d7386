"""When an evaluation records what: cheap records, attacks and stored matrices, by epoch.

Attacks cost far more than records (losses, accuracies, margins, correlations, weight norms),
so a dense trajectory should not mean dense attacks. `evaluation.every` is the period of all
three unless overridden: `record_every` (cheap records), `attack_every` (a period, or a list of
epochs) and `matrix_every` (stored matrices, thinned among the evaluated epochs). Epoch 0
records the initial state without attacks; the last epoch always records, attacks and stores
matrices, so the final summary is the same whatever the schedule.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Plan:
    """The epochs of a run's evaluations (0 = before training)."""

    records: frozenset[int]  # cheap records (every evaluated epoch records them too)
    attacks: frozenset[int]  # robust accuracies (never epoch 0)
    matrices: frozenset[int]  # stored matrices (a subset of the evaluated epochs)

    @property
    def evaluated(self) -> frozenset[int]:
        """Every epoch with an evaluation."""
        return self.records | self.attacks


def periodic(epochs: int, every: int) -> set[int]:
    """every, 2*every, ... and always the last epoch."""
    return set(range(every, epochs + 1, every)) | {epochs}


def evaluation_plan(evaluation, epochs: int) -> Plan:
    """The Plan of an EvaluationSpec over a run of `epochs` epochs."""
    records = {0} | periodic(epochs, evaluation.record_every or evaluation.every)
    chosen = evaluation.attack_every
    if isinstance(chosen, list):
        attacks = {e for e in chosen if 1 <= e <= epochs} | {epochs}
    else:
        attacks = periodic(epochs, chosen or evaluation.every)
    evaluated = records | attacks
    k = evaluation.matrix_every
    matrices = evaluated if k is None else {e for e in evaluated if e % k == 0} | {epochs}
    return Plan(frozenset(records), frozenset(attacks), frozenset(matrices))

"""Projected gradient descent (and FGSM, its one-step case) in l2 / linf balls.

Every example carries its own radius, so a whole list of radii runs as one batched computation.
Each example keeps its worst case (lowest attacker score) over all iterates and restarts, so more
steps or restarts can only make the attack stronger.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from advcore.attacks.losses import attack_loss, attacker_score
from advcore.attacks.norms import (Generator, bcast, project_ball, sample_ball,
                                   shrink_into_ball, steepest_direction)
from advcore.attacks.subspace import Subspace, projection_flops, subspace_directions
from advcore.cost import FLOAT, AttackContext, AttackCost, Factor

Model = Callable[[Tensor], Tensor]


@dataclass
class Threat:
    """The feasible set: a norm ball per example (optionally per patch), optionally restricted
    to a subspace, optionally intersected with a box. box=None means NO clamping at all."""

    norm: str  # "l2" | "linf"
    radius: Tensor | float  # (*lead) one radius per example, or one for all
    ball_ndim: int  # trailing dims forming one ball: feature_ndim (global) or 1 (per patch)
    feature_ndim: int  # trailing dims forming one example
    subspace: Subspace | None = None  # the allowed directions (None: all of them)
    box: tuple[float, float] | None = None

    def constrain(self, x: Tensor, delta: Tensor) -> Tensor:
        """Map a perturbation into the feasible set."""
        if self.subspace is not None:
            delta = self.subspace.project(delta)
            if self.norm == "l2" and self.subspace.ndim <= self.ball_ndim:
                # each ball's radial scaling stays in the subspace: the exact projection
                delta = project_ball(delta, self.norm, self.radius, self.ball_ndim)
            else:
                # one factor per example keeps the direction: a feasible point of the subspace
                delta = shrink_into_ball(delta, self.norm, self.radius, self.ball_ndim,
                                         self.feature_ndim)
        else:
            delta = project_ball(delta, self.norm, self.radius, self.ball_ndim)
        if self.box is not None:
            delta = (x + delta).clamp(*self.box) - x
        return delta

    def ascent(self, grad: Tensor) -> Tensor:
        """Unit steepest-ascent direction, taken inside the subspace when there is one."""
        if self.subspace is not None:
            grad = self.subspace.project(grad)
        return steepest_direction(grad, self.norm, self.ball_ndim)

    def sample(self, x: Tensor, generator: Generator) -> Tensor:
        """A random feasible perturbation (the random start / the random-noise baseline)."""
        if self.subspace is not None:
            delta = self.subspace.sample(x, self.norm, self.radius, self.ball_ndim,
                                         self.feature_ndim, generator)
        else:
            delta = sample_ball(x, self.norm, self.radius, self.ball_ndim, generator)
        return self.constrain(x, delta)


def run_pgd(model: Model, x: Tensor, y: Tensor, threat: Threat, *, steps: int,
            step_size: Tensor | float, restarts: int = 1, random_start: bool = True,
            loss: str = "margin", target: int | None = None,
            generator: Generator = None) -> tuple[Tensor, Tensor]:
    """Maximise the attack loss over the threat set; returns (delta, score) of each example's
    worst case: delta (*lead, *F), score (*lead) = attacker_score (lower = more successful).

    x (*lead, *F); y (*lead) (binary +-1 float or long classes); step_size per example (*lead)
    or a float. Gradients are taken w.r.t. the perturbation only (model parameters untouched).
    """
    x = x.detach()
    step = bcast(step_size, x)
    best_delta = torch.zeros_like(x)
    best_score = torch.full(y.shape, float("inf"), dtype=x.dtype, device=x.device)
    for _ in range(restarts if random_start else 1):
        delta = threat.sample(x, generator) if random_start else torch.zeros_like(x)
        for t in range(steps + 1):
            last = t == steps
            with torch.set_grad_enabled(not last):
                delta.requires_grad_(not last)
                logits = model(x + delta)
                if not last:
                    grad = _input_gradient(attack_loss(logits, y, loss, target).sum(), delta)
            with torch.no_grad():
                score = attacker_score(logits.detach(), y, target)
                better = score < best_score  # (*lead)
                best_score = torch.where(better, score, best_score)
                delta = delta.detach()
                best_delta = torch.where(bcast(better, x), delta, best_delta)
                if not last:
                    delta = threat.constrain(x, delta + step * threat.ascent(grad))
    return best_delta, best_score


def _input_gradient(objective: Tensor, delta: Tensor) -> Tensor:
    """d objective / d delta; zeros where the output does not depend on the input at all
    (constant or detached models), which the masking flags then report."""
    if not objective.requires_grad:
        return torch.zeros_like(delta)
    (grad,) = torch.autograd.grad(objective, delta, allow_unused=True)
    return torch.zeros_like(delta) if grad is None else grad


def fgsm(model: Model, x: Tensor, y: Tensor, threat: Threat, *, loss: str = "margin",
         target: int | None = None) -> tuple[Tensor, Tensor]:
    """One steepest-ascent step of the full radius from the clean point (no random start)."""
    return run_pgd(model, x, y, threat, steps=1, step_size=threat.radius, random_start=False,
                   loss=loss, target=target)


def step_sizes(step_size: str | float, radius: Tensor | float, steps: int) -> Tensor | float:
    """'auto' = 2.5 * radius / steps per example (Madry et al.); a number is used as given."""
    return 2.5 * radius / steps if step_size == "auto" else float(step_size)


# input-sized tensors live at once in a PGD iteration (measured): delta, best_delta, x + delta
# and the gradient; a box adds the clamped candidate, a subspace its projection
PGD_WORKING_INPUTS = 4


def pgd_cost(attack, ctx: AttackContext, *, steps: int | None = None,
             random_start: bool | None = None) -> AttackCost:
    """Per example and radius: each restart runs `steps` forward + input-gradient passes and
    one last forward, and projects onto the subspace twice per step (plus twice at its random
    start)."""
    steps = attack.steps if steps is None else steps
    random_start = attack.random_start if random_start is None else random_start
    restarts = attack.restarts if random_start else 1
    K = ctx.directions if ctx.directions is not None else \
        subspace_directions(attack.subspace, ctx.data.features)
    proj = projection_flops(K, ctx.in_elements)
    per_restart = (steps + 1) * ctx.model.forward + steps * ctx.model.forward \
        + (2 * steps + 2 * random_start) * proj
    inputs = PGD_WORKING_INPUTS + (attack.box is not None) + (K > 0)
    working = inputs * ctx.in_elements * FLOAT + ctx.model.backward_bytes
    factors = [Factor((*ctx.loc, "restarts"), restarts, 5)]
    if attack.kind != "fgsm":
        factors.append(Factor((*ctx.loc, "steps"), steps, 100))
    if K:
        factors.append(Factor((*ctx.loc, "subspace"), K, 32))
    return AttackCost(flops=restarts * per_restart, bytes=working, factors=tuple(factors))


def fgsm_cost(attack, ctx: AttackContext) -> AttackCost:
    """One steepest-ascent step from the clean point (run_pgd with one step, no restarts)."""
    return pgd_cost(attack, ctx, steps=1, random_start=False)

"""Projected gradient descent (and FGSM, its one-step case) in l2 / linf balls.

Every example carries its own radius, so a whole list of radii runs as one batched computation.
Each example keeps its worst case (lowest attacker score) over all iterates and restarts, so more
steps or restarts can only make the attack stronger.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

import torch
from torch import Tensor

from advcore.attacks.losses import attack_loss, attacker_score
from advcore.attacks.norms import (_TINY, Generator, ball_norm, bcast, project_ball,
                                   sample_ball, shrink_into_ball, steepest_direction,
                                   steepest_direction_)
from advcore.attacks.subspace import Subspace, projection_flops, subspace_directions
from advcore.cost import FLOAT, AttackContext, AttackCost, Factor

Model = Callable[[Tensor], Tensor]

# the early exit compacts the active batch once it would shrink to this fraction or less: each
# compaction copies the inputs and iterates, so examples broken one by one stay (frozen) in the
# batch until enough of them have gone
COMPACT_BELOW = 0.75
# on a CPU the examples are attacked in parts of at most this many input elements (all seeds)
CACHE_ELEMENTS = 2**21


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

    def bounds(self, x: Tensor) -> tuple[Tensor, Tensor] | None:
        """Per coordinate the lowest and highest feasible value around x (the l-inf ball
        intersected with the box; per patch or whole, an l-inf ball is the same box), for
        `advance`; None where the set is not a box."""
        if self.norm != "linf" or self.subspace is not None:
            return None
        r = bcast(self.radius, x)
        lower, upper = x - r, x + r
        if self.box is not None:
            lower.clamp_(min=self.box[0])
            upper.clamp_(max=self.box[1])
        return lower, upper

    def advance(self, x: Tensor, x_adv: Tensor, grad: Tensor, step: Tensor | float,
                bounds: tuple[Tensor, Tensor] | None = None) -> Tensor:
        """The next iterate: x_adv moved by `step` along the steepest ascent of `grad`, mapped
        into the feasible set; returns the point x + delta, not the perturbation. Works in place
        on `grad` (which it consumes). The l-inf projection is one clamp between `bounds(x)`
        (pass them in to compute them once per batch)."""
        if self.subspace is not None:
            delta = self.ascent(grad).mul_(step).add_(x_adv).sub_(x)
            return delta.copy_(self.constrain(x, delta)).add_(x)
        point = steepest_direction_(grad, self.norm, self.ball_ndim).mul_(step).add_(x_adv)
        if self.norm == "linf":
            lower, upper = bounds if bounds is not None else self.bounds(x)
            return point.clamp_(min=lower, max=upper)
        delta = point.sub_(x)
        n = ball_norm(delta, "l2", self.ball_ndim)
        scale = (bcast(self.radius, n) / n.clamp_min(_TINY)).clamp_(max=1.0)
        delta.mul_(scale.reshape(scale.shape + (1,) * self.ball_ndim))
        delta.add_(x)
        return delta.clamp_(*self.box) if self.box is not None else delta

    def sample(self, x: Tensor, generator: Generator) -> Tensor:
        """A random feasible perturbation (the random start / the random-noise baseline)."""
        if self.subspace is not None:
            delta = self.subspace.sample(x, self.norm, self.radius, self.ball_ndim,
                                         self.feature_ndim, generator)
        else:
            delta = sample_ball(x, self.norm, self.radius, self.ball_ndim, generator)
        return self.constrain(x, delta)


def _gather(value: Tensor | float, order: Tensor, dim: int) -> Tensor | float:
    """`value` (*B, N, ...) at per-row example indices `order` (*B, K) along the example dim
    `dim`; floats and tensors that broadcast along it pass through."""
    if not isinstance(value, Tensor) or value.dim() <= dim or value.shape[dim] == 1:
        return value
    index = order.reshape(order.shape + (1,) * (value.dim() - dim - 1))
    return value.gather(dim, index.expand(*order.shape, *value.shape[dim + 1:]))


def _cache_sized(order: Tensor, x: Tensor, dim: int) -> list[Tensor]:
    """`order` (*B, K) of S > 1 batched seeds cut along K into parts whose inputs, over all
    seeds, hold at most CACHE_ELEMENTS on a CPU (one part elsewhere). Every activation of a
    batched-seed forward grows with S x K: past the caches, S seeds batched ran slower than
    S runs one by one (benchmarks/seeds_bench.py)."""
    if x.device.type != "cpu" or x.shape[:dim].numel() == 1:
        return [order]  # one seed: its batched matmuls already run near the peak whole
    per_example = x.shape[:dim].numel() * x.shape[dim + 1:].numel()
    size = max(1, CACHE_ELEMENTS // max(per_example, 1))
    return list(order.split(size, dim=-1)) if order.shape[-1] > size else [order]


def _unbroken_first(best: Tensor) -> Tensor | None:
    """Per row of the seed dims, the example indices with the unbroken (score > 0) first, cut to
    the largest unbroken count over rows (*B, K); None when nothing is left to attack."""
    unbroken = best > 0
    k = int(unbroken.sum(-1).max()) if unbroken.numel() else 0
    if k == 0:
        return None
    return (~unbroken).to(torch.uint8).sort(dim=-1, stable=True).indices[..., :k]


def run_pgd(model: Model, x: Tensor, y: Tensor, threat: Threat, *, steps: int,
            step_size: Tensor | float, restarts: int = 1, random_start: bool = True,
            loss: str = "margin", target: int | None = None,
            generator: Generator = None, stop_broken: bool = False,
            keep_delta: bool = True) -> tuple[Tensor | None, Tensor]:
    """Maximise the attack loss over the threat set; returns (delta, score) of each example's
    worst case: delta (*lead, *F), score (*lead) = attacker_score (lower = more successful).
    `keep_delta=False` (an evaluation that only needs the scores) skips the worst-iterate
    bookkeeping, an input-sized copy per step, and returns delta None.

    x (*lead, *F); y (*lead) (binary +-1 float or long classes); step_size per example (*lead)
    or a float. Gradients are taken w.r.t. the perturbation only (model parameters untouched).

    The score of an iterate comes from the forward pass that also gives its gradient; each
    restart adds one forward for its last iterate. `stop_broken` (evaluation, untargeted): an
    example whose score reaches <= 0 is broken for good (its worst case only falls), so it
    keeps that worst case and stops. Each row of the seed dims keeps its unbroken examples in
    front and the batch shrinks (by a quarter or more at a time) to the largest unbroken count
    over rows (the others' broken examples fill their rows, frozen); later restarts start from
    the unbroken ones only.
    Random starts are drawn for every example, so S batched seeds draw what S runs draw.
    """
    x = x.detach()
    n_batch = y.dim() - 1
    stop = stop_broken and target is None
    score_is_loss = loss == "margin" and target is None  # attack_loss = -margin = -score
    best_x = None  # each example's worst iterate (x itself until one improves)
    best_score = torch.full(y.shape, float("inf"), dtype=x.dtype, device=x.device)
    step = bcast(step_size, x)
    for _ in range(restarts if random_start else 1):
        start = threat.sample(x, generator) if random_start else None  # drawn for all
        order = _unbroken_first(best_score) if stop else \
            torch.arange(y.shape[-1], device=x.device).expand(y.shape)
        if order is None:
            break
        for part in _cache_sized(order, x, n_batch):  # examples are attacked independently
            sub = _Active(x, y, threat, step, best_score, part, n_batch)
            x_adv = sub.x.clone() if start is None else sub.x + _gather(start, part, n_batch)
            for t in range(steps + 1):
                last = t == steps
                with torch.set_grad_enabled(not last):
                    x_adv.requires_grad_(not last)
                    logits = model(x_adv)
                    if not last:
                        objective = attack_loss(logits, sub.y, loss, target)
                        grad = _input_gradient(objective.sum(), x_adv)
                with torch.no_grad():
                    x_adv = x_adv.detach()
                    score = -objective.detach() if score_is_loss and not last else \
                        attacker_score(logits.detach(), sub.y, target)
                    better = score < sub.best  # (*lead) of the active batch
                    if stop:
                        better &= sub.best > 0  # broken examples are frozen
                    sub.best = torch.where(better, score, sub.best)
                    rows = better.nonzero(as_tuple=True)  # only improved rows are written
                    full = (*rows[:-1], sub.order[rows])
                    if rows[0].numel():
                        best_score[full] = score[rows]
                    if not last:
                        x_next = sub.threat.advance(sub.x, x_adv, grad, sub.step, sub.bounds)
                    if keep_delta and rows[0].numel():
                        # after the step: nothing reads this iterate again, so it may become
                        # the worst-case tensor itself
                        best_x = _keep_worst(best_x, x, x_adv, better, rows, full, sub.full)
                    if last:
                        break
                    x_adv = x_next
                    if stop:
                        unbroken = int((sub.best > 0).sum(-1).max())
                        if unbroken == 0:
                            break
                        if unbroken <= COMPACT_BELOW * sub.best.shape[-1]:
                            kept = _unbroken_first(sub.best)
                            sub = sub.select(kept)
                            x_adv = _gather(x_adv, kept, n_batch)
    if not keep_delta:
        return None, best_score
    return (torch.zeros_like(x) if best_x is None else best_x.sub_(x)), best_score


def _keep_worst(best_x: Tensor | None, x: Tensor, x_adv: Tensor, better: Tensor,
                rows: tuple[Tensor, ...], full: tuple[Tensor, ...], whole: bool) -> Tensor:
    """`best_x` (None: still the clean inputs `x`) with the improved examples (`better`, at
    `rows` of the active batch and `full` of the whole one) taken from the iterate `x_adv`, which
    is free to be overwritten. When the active batch is the whole one in order (`whole`) and
    most examples improved, the iterate becomes the worst case and only the others are copied
    in: at most half the rows move."""
    n_better = rows[0].numel()
    if best_x is None and whole and n_better == better.numel():
        return x_adv
    if best_x is None:
        best_x = x.clone()
    if whole and 2 * n_better >= better.numel():
        if n_better < better.numel():
            kept = (~better).nonzero(as_tuple=True)
            x_adv[kept] = best_x[kept]
        return x_adv
    best_x[full] = x_adv[rows]
    return best_x


class _Active:
    """The examples still attacked, per row of the seed dims: inputs, labels, radii, step
    sizes, each one's worst score so far, and `order` (*B, K), their indices in the batch."""

    def __init__(self, x, y, threat, step, best, order, dim) -> None:
        self.dim, self.order = dim, order
        n = y.shape[-1]
        full = order.shape[-1] == n and bool((order == torch.arange(n, device=order.device)).all())
        self.full = full  # the whole batch in its own order
        self._set(x, y, threat, step, best, (lambda v: v) if full else
                  (lambda v: _gather(v, order, dim)))

    def _set(self, x, y, threat, step, best, pick) -> None:
        self.x, self.y, self.step, self.best = pick(x), pick(y), pick(step), pick(best)
        radius = pick(threat.radius)
        self.threat = threat if radius is threat.radius else replace(threat, radius=radius)
        self.bounds = self.threat.bounds(self.x)

    def select(self, kept: Tensor) -> "_Active":
        """The sub-batch at per-row positions `kept` (*B, K') of this one."""
        out = object.__new__(_Active)
        out.dim, out.order, out.full = self.dim, self.order.gather(-1, kept), False
        out._set(self.x, self.y, self.threat, self.step, self.best,
                 lambda v: _gather(v, kept, self.dim))
        return out


def _input_gradient(objective: Tensor, delta: Tensor) -> Tensor:
    """d objective / d delta; zeros where the output does not depend on the input at all
    (constant or detached models), which the masking flags then report."""
    if not objective.requires_grad:
        return torch.zeros_like(delta)
    (grad,) = torch.autograd.grad(objective, delta, allow_unused=True)
    return torch.zeros_like(delta) if grad is None else grad


def fgsm(model: Model, x: Tensor, y: Tensor, threat: Threat, *, loss: str = "margin",
         target: int | None = None, stop_broken: bool = False,
         keep_delta: bool = True) -> tuple[Tensor | None, Tensor]:
    """One steepest-ascent step of the full radius from the clean point (no random start)."""
    return run_pgd(model, x, y, threat, steps=1, step_size=threat.radius, random_start=False,
                   loss=loss, target=target, stop_broken=stop_broken, keep_delta=keep_delta)


def step_sizes(step_size: str | float, radius: Tensor | float, steps: int) -> Tensor | float:
    """'auto' = 2.5 * radius / steps per example (Madry et al.); a number is used as given."""
    return 2.5 * radius / steps if step_size == "auto" else float(step_size)


# input-sized tensors live at once in a PGD iteration: the iterate x_adv and its gradient, the
# best iterate, the random start drawn for every example, and the active sub-batch's gathered
# inputs and start (evaluation compacts unbroken examples); a box adds the clamped candidate,
# a subspace its projection
PGD_WORKING_INPUTS = 6


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

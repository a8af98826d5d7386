"""Auto-PGD (Croce & Hein 2020, arXiv 2003.01690), the gradient core of AutoAttack.

APGD replaces PGD's fixed step rule by a budget-aware one: start with step 2*radius, move with
momentum 0.75, and at checkpoints w_j (w_1 = 0.22*steps, the gaps shrinking by 0.03*steps down to
0.06*steps) halve the step of every example whose loss rose in at most rho = 75% of the last
interval's steps, or whose best loss did not improve since the previous checkpoint when the step
was not halved there; a halved example restarts from its best point. Everything is per example,
so it batches over examples, radii and seeds exactly like `run_pgd`, and it reuses `Threat` (ball,
box, subspace, per-patch budget).

Losses (maximised): "ce" (cross-entropy; logistic for a binary head), "dlr" (the difference of
logits ratio, -(z_y - max_{j!=y} z_j) / (z_pi1 - z_pi3), invariant to shifting and scaling the
logits so a saturated softmax cannot hide a point), and "margin" (the CW margin). APGD-T attacks
the targeted DLR loss -(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2) for each of the top
`n_target_classes` runner-up classes t of the clean point in turn.

A binary head (one logit f, y in {-1,+1}) has no DLR: its "dlr" is the margin loss -y*f (DLR's
numerator; with two classes the denominator is |f| and the ratio a constant sign), and its only
"target" is the other class, so APGD-T there is APGD on the margin. What the binary form adds is
its starts: the class-mean direction (and any data-model direction, advcore.attacks.starts).

Each run keeps each example's worst case (lowest attacker score, the clean point included). In
evaluation a run attacks only the examples (columns over the seed dims) not yet broken, as
AutoAttack does, and drops the ones it breaks at its next checkpoint; random starts are drawn
for all examples every run, so S batched seeds draw exactly what S separate runs draw.
Adversarial training attacks every example in every run, for all its steps.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from advcore.attacks.losses import attack_loss, attacker_score, binary_target_label, is_binary
from advcore.attacks.norms import Generator, bcast, shrink_into_ball
from advcore.attacks.pgd import Threat, _input_gradient
from advcore.attacks.subspace import projection_flops, subspace_directions
from advcore.cost import FLOAT, AttackContext, AttackCost, Factor

Model = Callable[[Tensor], Tensor]

MOMENTUM = 0.75  # weight of the new step; 1 - MOMENTUM on the previous displacement
RHO = 0.75  # halve the step if the loss rose in at most this fraction of an interval's steps
_TINY = 1e-12


def checkpoints(steps: int) -> list[int]:
    """Iterations (1-based counts) after which step sizes may halve: AutoAttack's integer form of
    p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06), times `steps`."""
    first, least, shrink = max(int(0.22 * steps), 1), max(int(0.06 * steps), 1), \
        max(int(0.03 * steps), 1)
    out, at, gap = [], 0, first
    while at + gap <= steps:
        at += gap
        out.append(at)
        gap = max(gap - shrink, least)
    return out


# ----------------------------------------------------------------------------- losses


def _gather(logits: Tensor, cls: Tensor) -> Tensor:
    return logits.gather(-1, cls.unsqueeze(-1)).squeeze(-1)


def dlr_loss(logits: Tensor, y: Tensor, target: Tensor | None = None) -> Tensor:
    """Difference of logits ratio (*lead), maximised by the attacker; logits (*lead, C).

    Untargeted: -(z_y - max_{j!=y} z_j) / (z_pi1 - z_pi3); targeted at `target` (*lead):
    -(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2), pi the logits sorted descending. With too few
    classes for the denominator (C < 3; C < 4 targeted uses z_pi3) the plain margin is used.
    """
    n_classes = logits.shape[-1]
    z_y = _gather(logits, y)
    if target is None:
        other = logits.scatter(-1, y.unsqueeze(-1), float("-inf")).amax(-1)
        numerator = other - z_y
    else:
        numerator = _gather(logits, target) - z_y
    if n_classes < 3:
        return numerator
    top = logits.topk(min(4, n_classes), dim=-1).values  # (*lead, 3 or 4) descending
    if target is None or n_classes == 3:
        low = top[..., 2]
    else:
        low = 0.5 * (top[..., 2] + top[..., 3])
    return numerator / (top[..., 0] - low + _TINY)


def apgd_objective(logits: Tensor, y: Tensor, loss: str,
                   target: Tensor | int | None = None) -> Tensor:
    """The attacker's per-example objective (*lead) for APGD's losses.

    `target`: None (untargeted), a class index for all examples, or per-example classes (*lead)
    (APGD-T). Binary heads: ce -> logistic loss, dlr / margin -> -y*f (towards the target's sign
    when targeted)."""
    if is_binary(logits, y):
        if target is None:
            m = y.to(logits.dtype) * logits.reshape(y.shape)  # the margin, lowered
            return F.softplus(-m) if loss == "ce" else -m
        return attack_loss(logits, y, "ce" if loss == "ce" else "margin", int(target))
    y = y.long()
    if loss == "dlr":
        if isinstance(target, int):
            target = torch.full_like(y, target)
        return dlr_loss(logits, y, target)
    if isinstance(target, Tensor):  # per-example targets with ce / margin
        z_t = _gather(logits, target)
        if loss == "margin":
            return z_t - logits.scatter(-1, target.unsqueeze(-1), float("-inf")).amax(-1)
        return -F.cross_entropy(logits.flatten(0, -2), target.flatten(),
                                reduction="none").reshape(y.shape)
    return attack_loss(logits, y, loss, target)


# ----------------------------------------------------------------------------- one run


def apgd_run(model: Model, x: Tensor, y: Tensor, threat: Threat, *, steps: int, loss: str,
             start: Tensor, target: Tensor | int | None = None,
             score_target: int | None = None, stop_broken: bool = False) -> tuple[Tensor, Tensor]:
    """One APGD run from the feasible perturbation `start` (*lead, *F); returns (delta, score)
    of each example's lowest attacker score over all iterates (start included).

    `target`: what the loss aims at (None, one class, or per-example classes for APGD-T);
    `score_target`: the class the *score* measures success against (None: misclassification).
    `stop_broken` (evaluation): at each checkpoint, examples already broken (score <= 0) keep
    their worst case and stop; columns broken for every seed leave the batch.
    """
    n_batch = y.dim() - 1
    radius = threat.radius if isinstance(threat.radius, Tensor) else \
        torch.full(y.shape, float(threat.radius), dtype=x.dtype, device=x.device)
    marks = set(checkpoints(steps))

    def evaluate(delta: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(objective, grad, score) at x + delta."""
        with torch.enable_grad():
            delta = delta.detach().requires_grad_(True)
            logits = model(x + delta)
            objective = apgd_objective(logits, y, loss, target)
            grad = _input_gradient(objective.sum(), delta)
        return objective.detach(), grad.detach(), attacker_score(logits.detach(), y, score_target)

    delta = start.detach()
    objective, grad, score = evaluate(delta)
    state = {  # per-example state; every entry has the example dims (*lead) in front
        "x": x, "y": y, "radius": radius, "step": bcast(2.0 * radius, x), "delta": delta,
        "prev": delta, "grad": grad, "objective": objective,
        "best_delta": delta, "best_score": score,  # the evaluation's worst case (lowest score)
        "top_delta": delta, "top_grad": grad, "top_obj": objective,  # the schedule's best point
        "rises": torch.zeros_like(objective),  # loss increases since the last checkpoint
        "top_at_mark": objective, "halved_at_mark": torch.ones_like(objective, dtype=torch.bool),
        "done": torch.zeros_like(objective, dtype=torch.bool),  # stopped: broken at a checkpoint
        "index": torch.arange(y.shape[-1], device=y.device),  # columns of the original batch
    }
    if isinstance(target, Tensor):
        state["target"] = target
    out_delta, out_score = delta.clone(), score.clone()
    last_mark = 0
    with torch.no_grad():
        for i in range(1, steps + 1):
            x, y = state["x"], state["y"]  # evaluate() reads these: the compacted batch
            target = state.get("target", target)
            threat = replace(threat, radius=state["radius"])
            a = MOMENTUM if i > 1 else 1.0
            cur, step = state["delta"], state["step"]
            z = threat.constrain(x, cur + step * threat.ascent(state["grad"]))
            moved = threat.constrain(x, cur + a * (z - cur) + (1 - a) * (cur - state["prev"]))
            state["prev"], state["delta"] = cur, moved
            new_obj, grad, score = evaluate(moved)
            state["grad"] = grad
            state["rises"] = state["rises"] + (new_obj > state["objective"]).to(new_obj.dtype)
            state["objective"] = new_obj
            better = (score < state["best_score"]) & ~state["done"]
            state["best_score"] = torch.where(better, score, state["best_score"])
            state["best_delta"] = torch.where(bcast(better, x), moved, state["best_delta"])
            higher = new_obj > state["top_obj"]
            state["top_obj"] = torch.where(higher, new_obj, state["top_obj"])
            state["top_delta"] = torch.where(bcast(higher, x), moved, state["top_delta"])
            state["top_grad"] = torch.where(bcast(higher, x), grad, state["top_grad"])
            if i not in marks:
                continue
            oscillating = state["rises"] <= RHO * (i - last_mark)
            stuck = ~state["halved_at_mark"] & (state["top_at_mark"] >= state["top_obj"])
            halve = bcast(oscillating | stuck, x)
            state["step"] = torch.where(halve, state["step"] / 2, state["step"])
            state["delta"] = torch.where(halve, state["top_delta"], state["delta"])
            state["grad"] = torch.where(halve, state["top_grad"], state["grad"])
            state["halved_at_mark"], state["top_at_mark"] = oscillating | stuck, state["top_obj"]
            state["rises"] = torch.zeros_like(state["rises"])
            last_mark = i
            if stop_broken and i < steps:
                state["done"] = state["done"] | (state["best_score"] <= 0)
                keep = _columns(~state["done"], n_batch)
                if keep.numel() < state["index"].numel():  # drop columns broken for every seed
                    out_delta.index_copy_(n_batch, state["index"], state["best_delta"])
                    out_score.index_copy_(n_batch, state["index"], state["best_score"])
                    if keep.numel() == 0:
                        return out_delta, out_score
                    state = {k: v.index_select(0 if k == "index" else n_batch, keep)
                             for k, v in state.items()}
    out_delta.index_copy_(n_batch, state["index"], state["best_delta"])
    out_score.index_copy_(n_batch, state["index"], state["best_score"])
    return out_delta, out_score


# ----------------------------------------------------------------------------- runs over starts


def _columns(active: Tensor, n_batch: int) -> Tensor:
    """Indices along the example dim where any seed still has an active example."""
    flat = active.reshape(-1, active.shape[-1]).any(0) if n_batch else active
    return flat.nonzero().squeeze(-1)


def _sub_threat(threat: Threat, cols: Tensor, n_batch: int) -> Threat:
    if isinstance(threat.radius, Tensor):
        return replace(threat, radius=threat.radius.index_select(n_batch, cols))
    return threat


def direction_start(x: Tensor, direction: Tensor, threat: Threat) -> Tensor:
    """A feasible perturbation on the ball's boundary along `direction` (*lead, *F)."""
    grown = shrink_into_ball(direction.to(x.dtype), threat.norm, threat.radius, threat.ball_ndim,
                             threat.feature_ndim, grow=True)
    return threat.constrain(x, grown)


def run_apgd(model: Model, x: Tensor, y: Tensor, threat: Threat, *, steps: int,
             restarts: int = 1, random_start: bool = True, loss: str = "ce",
             target: int | None = None,
             n_target_classes: int | None = None, starts: Tensor | None = None,
             generator: Generator = None, best: tuple[Tensor, Tensor] | None = None,
             prune: bool = True) -> tuple[Tensor, Tensor]:
    """APGD over random restarts and direction starts; returns (delta, score) of each example's
    worst case, delta (*lead, *F), score (*lead) = attacker_score (lower = more successful).

    x (*lead, *F), y (*lead); `threat` carries per-example radii. `target`: one class for a
    targeted attack (score = minus the target's margin). `n_target_classes`: APGD-T -- the
    targeted loss at each of the top runner-up classes of the clean point in turn (k-class
    heads; a binary head has one other class, so this is the untargeted margin). `starts`
    (*lead, K, *F): directions to start from besides the `restarts` random starts (or the clean
    point, without `random_start`). `best`: a worst case
    found earlier (delta, score) to improve on. `prune` (evaluation): attack only examples not
    yet broken (by the clean point, `best` or an earlier run); without it (adversarial
    training) every example is attacked in every run and keeps its lowest score.
    """
    x = x.detach()
    n_batch = y.dim() - 1
    with torch.no_grad():
        clean = model(x)
    if best is None:  # the clean point is the first candidate
        best = (torch.zeros_like(x), attacker_score(clean, y, target))
    best_delta, best_score = best
    targets: list[Tensor | int | None] = [target]
    if n_target_classes is not None and target is None and not is_binary(clean, y):
        order = clean.argsort(-1, descending=True)  # (*lead, C): [0] is the predicted class
        n_t = min(n_target_classes, order.shape[-1] - 1)
        targets = [order[..., j] for j in range(1, n_t + 1)]
    # (loss target, start): None a random start, -1 the clean point, k >= 0 starts[..., k, :]
    runs: list[tuple[Tensor | int | None, int | None]] = []
    for t in targets:  # direction starts first: they often break a point at once
        if starts is not None:
            runs += [(t, k) for k in range(starts.shape[n_batch + 1])]
        runs += [(t, None)] * restarts if random_start else [(t, -1)]
    for t, k in runs:
        random = threat.sample(x, generator) if k is None else None  # drawn for every example
        active = best_score > 0 if prune else torch.ones_like(best_score, dtype=torch.bool)
        cols = _columns(active, n_batch)
        if cols.numel() == 0:
            break
        pick = lambda t_: t_.index_select(n_batch, cols)  # noqa: E731
        sub_x, sub_y, sub_threat = pick(x), pick(y), _sub_threat(threat, cols, n_batch)
        if k is None:
            start = pick(random)
        elif k < 0:
            start = torch.zeros_like(sub_x)
        else:
            start = direction_start(sub_x, pick(starts).select(n_batch + 1, k), sub_threat)
        delta, score = apgd_run(model, sub_x, sub_y, sub_threat, steps=steps, loss=loss,
                                start=start, target=pick(t) if isinstance(t, Tensor) else t,
                                score_target=target, stop_broken=prune)
        better = (score < pick(best_score)) & pick(active)
        new_score = torch.where(better, score, pick(best_score))
        new_delta = torch.where(bcast(better, sub_x), delta, pick(best_delta))
        best_score = best_score.index_copy(n_batch, cols, new_score)
        best_delta = best_delta.index_copy(n_batch, cols, new_delta)
    return best_delta, best_score


def run_autoattack(model: Model, x: Tensor, y: Tensor, threat: Threat, *, steps: int = 100,
                   restarts: int = 1, n_target_classes: int = 9, starts: Tensor | None = None,
                   generator: Generator = None, prune: bool = True) -> tuple[Tensor, Tensor]:
    """AutoAttack's gradient part: APGD-CE on every point, then APGD-T (targeted DLR over the top
    `n_target_classes` classes; a binary head: the margin, from the direction `starts` and random
    restarts) on the points still robust. Returns each point's worst case (delta, score)."""
    best = run_apgd(model, x, y, threat, steps=steps, restarts=restarts, loss="ce",
                    generator=generator, prune=prune)
    return run_apgd(model, x, y, threat, steps=steps, restarts=restarts, loss="dlr",
                    n_target_classes=n_target_classes, starts=starts, generator=generator,
                    best=best, prune=prune)


# ----------------------------------------------------------------------------- cost

APGD_WORKING_INPUTS = 7  # delta, its previous iterate, best, best-at-checkpoint, grad, x, step state
MAX_DATA_STARTS = 3  # feature direction, class-mean difference, opposite clusters (advcore.attacks.starts)
MAX_PAIR_STARTS = 4  # nearest cluster pairs an argmax read-out's attack starts from


def _apgd_runs(attack, ctx, *, targeted_classes: bool) -> int:
    """Runs of APGD per example: (direction starts + random restarts) per loss target."""
    binary_head = ctx.data.binary and (attack.readout != "fine" or not ctx.data.has_readout)
    n_classes = ctx.data.n_classes or 2
    targets = 1
    if targeted_classes and not binary_head:
        targets = max(1, min(attack.n_target_classes, n_classes - 1))
    # the data models' start directions exist for binary labels only (advcore.attacks.starts)
    starts = data_starts(ctx) if attack.data_starts and binary_head else 0
    return targets * (starts + (attack.restarts if attack.random_start else 1))


def data_starts(ctx: AttackContext, pairs: int | None = MAX_PAIR_STARTS) -> int:
    """Start directions of binary data (advcore.attacks.starts.start_directions): the data's
    attack direction where it has one, the class-mean difference, the opposite clusters where
    it has clusters, and (an argmax read-out, or `pairs` None: all of them) the cluster pairs of
    an opposite side, at most k - 1 clusters."""
    clusters = "cluster" in ctx.data.features
    base = ctx.data.has_direction + 1 + clusters
    if not clusters or (pairs is not None and ctx.readout != "argmax"):
        return base
    k = ctx.data.features["cluster"][0]
    return base + (k - 1 if pairs is None else min(pairs, k - 1))


def apgd_cost(attack, ctx: AttackContext, *, targeted_classes: bool | None = None) -> AttackCost:
    """Per example and radius, priced as if every point stays robust to the last step (the
    early exit at checkpoints only makes it cheaper): each run takes `steps` forward +
    input-gradient passes and one last forward, projecting onto the subspace twice per step."""
    if targeted_classes is None:
        targeted_classes = attack.targeted and attack.target is None
    runs = _apgd_runs(attack, ctx, targeted_classes=targeted_classes)
    K = ctx.directions if ctx.directions is not None else \
        subspace_directions(attack.subspace, ctx.data.features)
    proj = projection_flops(K, ctx.in_elements)
    per_run = (2 * attack.steps + 1) * ctx.model.forward + (2 * attack.steps + 2) * proj
    # the direction starts (*lead, K, *F) stay live through every run
    inputs = APGD_WORKING_INPUTS + (attack.box is not None) + (K > 0) \
        + (data_starts(ctx) if attack.data_starts else 0)
    working = inputs * ctx.in_elements * FLOAT + ctx.model.backward_bytes
    factors = [Factor((*ctx.loc, "steps"), attack.steps, 100),
               Factor((*ctx.loc, "restarts"), attack.restarts, 5)]
    if targeted_classes:
        factors.append(Factor((*ctx.loc, "n_target_classes"), attack.n_target_classes, 9))
    if K:
        factors.append(Factor((*ctx.loc, "subspace"), K, 32))
    return AttackCost(flops=runs * per_run, bytes=working, factors=tuple(factors))


def autoattack_cost(attack, ctx: AttackContext) -> AttackCost:
    """APGD-CE (random restarts only), then APGD-T over the target classes (and the data's
    start directions), both priced on every point."""
    ce = apgd_cost(attack.model_copy(update={"data_starts": False}), ctx, targeted_classes=False)
    targeted = apgd_cost(attack, ctx, targeted_classes=True)
    return AttackCost(flops=ce.flops + targeted.flops, bytes=max(ce.bytes, targeted.bytes),
                      factors=targeted.factors)

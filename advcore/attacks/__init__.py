"""Attacks: FGSM, PGD (l2/linf, restarts, subspace, box, per-patch budget) and the fixed
feature-direction attack, with gradient-masking flags.

`model` is any callable mapping x (*lead, *F) to logits (*lead) (binary head, y in {-1,+1}) or
(*lead, C) (k classes, y long); `lead` is (N,) or (S seeds, N). All radii of an evaluation run as
ONE batched computation: the radii are stacked into the example dim, (*B, N, *F) ->
(*B, R*N, *F), so the model sees a larger batch and needs no extra leading dim.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import Tensor

from advcore.attacks.apgd import (MAX_PAIR_STARTS, apgd_cost, autoattack_cost, run_apgd,
                                  run_autoattack)
from advcore.attacks.direction import direction_cost, direction_delta
from advcore.attacks.losses import attack_loss, attacker_score, binary_target_label, margin
from advcore.attacks.masking import gradient_flags, rises_with_radius, verdict
from advcore.attacks.norms import Generator, bcast
from advcore.attacks.pgd import Threat, fgsm, fgsm_cost, pgd_cost, run_pgd, step_sizes
from advcore.attacks.starts import start_directions
from advcore.attacks.subspace import make_subspace, projection_flops, subspace_directions
from advcore.cost import FLOAT, AttackContext, AttackCost, Factor, Term, term
from advcore.spec import AttackSpec

__all__ = ["AttackResult", "perturb", "robust_accuracy", "margin", "attack_loss",
           "ATTACK_COSTS", "robust_accuracy_cost", "perturb_cost"]

Model = Callable[[Tensor], Tensor]

# radii per batched chunk: at most this many stacked input elements per seed (8 MB float32)
MAX_STACKED_ELEMENTS = 2**21


@dataclass
class AttackResult:
    """Per-radius robust accuracy. `flags` (gradient attacks; JSON-able): zero_grad_fraction and
    saturated_fraction (of correctly classified clean points), rises_with_radius (raw attack),
    noise_stronger_fraction, and the verdict: suspicious (bool) with human-readable reasons."""

    radii: list[float]
    accuracy: Tensor  # (R, *lead[:-1]) fraction of points still correct, per radius (per seed)
    flags: dict[str, Any] = field(default_factory=dict)  # gradient-masking suspicions
    margins: Tensor | None = None  # (R, *lead) each example's worst-case margin found
    # targeted attacks: (R, *lead[:-1]) fraction of the points NOT already of the target class
    # that the attack moved into it (the "success rate" of science.md's Cat->Dog tables)
    target_success: Tensor | None = None


def _threat(attack: AttackSpec, x: Tensor, radius: Tensor | float, feature_ndim: int,
            subspace_basis: Tensor | None, basis_ndim: int | None) -> Threat:
    subspace = None
    if subspace_basis is not None:
        subspace = make_subspace(subspace_basis.to(x.dtype), tuple(x.shape), feature_ndim,
                                 basis_ndim)
    ball_ndim = 1 if attack.budget == "per_patch" else feature_ndim
    box = tuple(attack.box) if attack.box is not None else None
    return Threat(attack.norm, radius, ball_ndim, feature_ndim, subspace, box)


def _attack_delta(model: Model, x: Tensor, y: Tensor, attack: AttackSpec, threat: Threat, *,
                  direction: Tensor | None, generator: Generator,
                  clusters: Tensor | None = None, cluster_labels: Tensor | None = None,
                  cluster_pairs: bool = False,
                  evaluation: bool = False) -> tuple[Tensor | None, Tensor | None]:
    """The attack's perturbation (*lead, *F) within the threat's per-example radii, and its
    attacker score (*lead) when the attack computed one (None: the fixed-direction attack).
    `evaluation`: only robustness counts (PGD and APGD stop on examples once broken); untargeted
    PGD and FGSM then return delta None, their scores being all that robust_accuracy reads."""
    feature_ndim, radius = threat.feature_ndim, threat.radius
    target = attack.target if attack.targeted else None
    if attack.kind in ("apgd", "autoattack"):
        return _apgd_delta(model, x, y, attack, threat, direction=direction, clusters=clusters,
                           cluster_labels=cluster_labels, cluster_pairs=cluster_pairs,
                           generator=generator, prune=evaluation)
    if attack.kind == "feature_direction" and attack.directions == "data":
        starts = start_directions(x, y, feature_ndim=feature_ndim, direction=direction,
                                  clusters=clusters, cluster_labels=cluster_labels,
                                  cluster_pairs=None)
        if starts is None:
            raise ValueError("the data directions attack needs a data model with directions")
        return worst_direction(model, x, y, starts, threat, target), None
    if attack.kind == "feature_direction":
        if direction is None:
            raise ValueError("the feature_direction attack needs the data model's direction")
        delta = direction_delta(x, y, radius, direction.to(x.dtype), norm=attack.norm,
                                feature_ndim=feature_ndim)
        if threat.box is not None:
            delta = (x + delta).clamp(*threat.box) - x
        return delta, None
    scores_only = evaluation and target is None  # robust_accuracy reads the margins only
    if attack.kind == "fgsm":
        return fgsm(model, x, y, threat, loss=attack.loss, target=target,
                    stop_broken=evaluation, keep_delta=not scores_only)
    return run_pgd(model, x, y, threat, steps=attack.steps,
                   step_size=step_sizes(attack.step_size, radius, attack.steps),
                   restarts=attack.restarts, random_start=attack.random_start,
                   loss=attack.loss, target=target, generator=generator,
                   stop_broken=evaluation, keep_delta=not scores_only)


def worst_direction(model: Model, x: Tensor, y: Tensor, directions: Tensor, threat: Threat,
                    target: int | None = None) -> Tensor:
    """Per example the lowest-scoring of the fixed `directions` (*lead, K, *F), each grown to the
    boundary of the example's ball (and clamped into its box): (*lead, *F). K forward passes."""
    from advcore.attacks.apgd import direction_start

    n_batch = y.dim() - 1
    best_delta = torch.zeros_like(x)
    best = torch.full(y.shape, float("inf"), dtype=x.dtype, device=x.device)
    with torch.no_grad():
        for k in range(directions.shape[n_batch + 1]):
            delta = direction_start(x, directions.select(n_batch + 1, k), threat)
            score = attacker_score(model(x + delta), y, target)
            better = score < best
            best = torch.where(better, score, best)
            best_delta = torch.where(bcast(better, x), delta, best_delta)
    return best_delta


def _apgd_delta(model: Model, x: Tensor, y: Tensor, attack: AttackSpec, threat: Threat, *,
                direction: Tensor | None, clusters: Tensor | None,
                cluster_labels: Tensor | None, cluster_pairs: bool, generator: Generator,
                prune: bool) -> tuple[Tensor, Tensor]:
    """APGD / AutoAttack, started also from the data model's directions when it has any (the
    nearest cluster pairs too when the attacked read-out is argmax: `cluster_pairs`)."""
    starts = None
    if attack.data_starts:
        starts = start_directions(x, y, feature_ndim=threat.feature_ndim, direction=direction,
                                  clusters=clusters, cluster_labels=cluster_labels,
                                  cluster_pairs=MAX_PAIR_STARTS if cluster_pairs else 0)
    if attack.kind == "autoattack":
        return run_autoattack(model, x, y, threat, steps=attack.steps, restarts=attack.restarts,
                              n_target_classes=attack.n_target_classes, starts=starts,
                              generator=generator, prune=prune)
    apgd_t = attack.targeted and attack.target is None
    return run_apgd(model, x, y, threat, steps=attack.steps,
                    restarts=attack.restarts, random_start=attack.random_start,
                    loss=attack.loss, target=attack.target if attack.targeted else None,
                    n_target_classes=attack.n_target_classes if apgd_t else None,
                    starts=starts, generator=generator, prune=prune)


def flag_loss(attack: AttackSpec) -> str:
    """The loss whose clean-point gradient the masking flags inspect: DLR and AutoAttack's
    targeted phase vanish where the margin's gradient does."""
    return "margin" if attack.kind == "autoattack" or attack.loss == "dlr" else attack.loss


def perturb(model: Model, x: Tensor, y: Tensor, attack: AttackSpec, radius: float, *,
            feature_ndim: int, subspace_basis: Tensor | None = None,
            direction: Tensor | None = None, generator: Generator = None,
            basis_ndim: int | None = None, clusters: Tensor | None = None,
            cluster_labels: Tensor | None = None, cluster_pairs: bool = False) -> Tensor:
    """Adversarial examples x_adv (same shape as x) at one radius; used by adversarial training.

    `generator` may be one torch.Generator or a list of one per seed (x's first dim is then the
    seed dim), which makes S batched seeds draw exactly what S separate runs draw.
    `subspace_basis`: (K, *F) or per seed (*B, K, *F) directions spanning whole inputs, or for
    patch inputs (K, d) / (*B, K, d) directions applied to every patch (see attacks.subspace);
    `basis_ndim` (feature_ndim or 1) resolves the rare shape ambiguity between the two.
    `direction`: the feature-direction attack's (*F) or per-seed (*B, *F) direction.
    `clusters` (k, *F) or (*B, k, *F) with `cluster_labels` (k,) +-1: cluster means whose
    opposite-cluster direction apgd / autoattack also start from (advcore.attacks.starts);
    `cluster_pairs`: also from the nearest cluster pairs u_t - u_own (an argmax read-out).
    """
    threat = _threat(attack, x, float(radius), feature_ndim, subspace_basis, basis_ndim)
    delta, _ = _attack_delta(model, x, y, attack, threat, direction=direction,
                             generator=generator, clusters=clusters,
                             cluster_labels=cluster_labels,
                             cluster_pairs=cluster_pairs)
    return (x.detach() + delta).detach()


def _stack_radii(t: Tensor, n_batch: int, n_radii: int) -> Tensor:
    """(*B, N, ...) -> (*B, R*N, ...): R copies of the examples, radius-major."""
    expanded = t.unsqueeze(n_batch).expand(*t.shape[:n_batch], n_radii, *t.shape[n_batch:])
    return expanded.reshape(*t.shape[:n_batch], -1, *t.shape[n_batch + 1:])


def robust_accuracy(model: Model, x: Tensor, y: Tensor, attack: AttackSpec, *,
                    feature_ndim: int, subspace_basis: Tensor | None = None,
                    direction: Tensor | None = None, generator: Generator = None,
                    basis_ndim: int | None = None, clusters: Tensor | None = None,
                    cluster_labels: Tensor | None = None,
                    cluster_pairs: bool = False, early_exit: bool = True) -> AttackResult:
    """Robust accuracy at every radius of `attack` (radius 0 = clean accuracy).

    `early_exit`: PGD / APGD stop attacking an example once it is broken (the same accuracy;
    its margin is then the first one found <= 0, not the lowest); False runs every example to
    the last step (the reference the early exit is tested against).

    For fgsm/pgd an example counts as robust at radius r only if neither the attack (at r or at
    any smaller radius: those perturbations are feasible at r too) nor a random point of the ball
    at r misclassifies it; flags report where the raw attack looked masked. The
    feature_direction attacks are reported as is: fixed shifts per radius (the data directions
    attack: the worst of the data model's directions per example).
    """
    radii = [float(r) for r in attack.radii]
    n_batch = x.dim() - feature_ndim - 1
    n = x.shape[n_batch]
    per_seed = x.shape[n_batch:].numel()
    chunk = max(1, MAX_STACKED_ELEMENTS // max(per_seed, 1))
    gradient_attack = attack.kind != "feature_direction"
    target = attack.target if attack.targeted else None
    attack_margins, noise_margins, reached = [], [], []
    with torch.no_grad():
        for start in range(0, len(radii), chunk):
            part = radii[start:start + chunk]
            xs, ys = _stack_radii(x, n_batch, len(part)), _stack_radii(y, n_batch, len(part))
            r = torch.tensor(part, dtype=x.dtype, device=x.device).repeat_interleave(n)
            r = r.expand(*x.shape[:n_batch], -1)  # (*B, R*N)
            threat = _threat(attack, xs, r, feature_ndim, subspace_basis, basis_ndim)
            if gradient_attack:  # noise first: the attack's draws then do not depend on it
                noise_margins.append(margin(model(xs + threat.sample(xs, generator)), ys))
            delta, score = _attack_delta(model, xs, ys, attack, threat, direction=direction,
                                         generator=generator, clusters=clusters,
                                         cluster_labels=cluster_labels,
                                         cluster_pairs=cluster_pairs,
                                         evaluation=early_exit)
            if score is not None and target is None:  # untargeted: the score is the margin
                attack_margins.append(score)
                continue
            logits = model(xs + delta)
            attack_margins.append(margin(logits, ys))
            if target is not None:
                reached.append(attacker_score(logits, ys, target) < 0)

    def unstack(parts: list[Tensor]) -> Tensor:  # (*B, R*N) chunks -> (R, *B, N)
        joined = torch.cat(parts, dim=n_batch)
        return joined.reshape(*x.shape[:n_batch], len(radii), n).movedim(n_batch, 0)

    worst = unstack(attack_margins)
    correct = worst > 0  # (R, *B, N)
    flags: dict[str, Any] = {}
    if gradient_attack:  # (a fixed-direction attack may legitimately rise: no masking there)
        flags["rises_with_radius"] = rises_with_radius(correct.float().mean(-1), radii)
        noise_m = unstack(noise_margins)
        flags["noise_stronger_fraction"] = float((correct & (noise_m <= 0)).float().mean())
        worst = torch.minimum(worst, noise_m)
        order = sorted(range(len(radii)), key=lambda i: radii[i])
        worst[order] = worst[order].cummin(dim=0).values  # a smaller radius's attack counts too
        correct = worst > 0
        flags.update(gradient_flags(model, x, y, loss=flag_loss(attack), target=target,
                                    feature_ndim=feature_ndim))
    success = None
    if target is not None:
        others = _label_is_not(y, target).to(x.dtype)  # (*B, N)
        hits = unstack(reached).to(x.dtype) * others
        success = hits.sum(-1) / others.sum(-1).clamp_min(1)
    return AttackResult(radii=radii, accuracy=correct.float().mean(-1),
                        flags=verdict(flags, flag_loss(attack)), margins=worst,
                        target_success=success)


def _label_is_not(y: Tensor, target: int) -> Tensor:
    """Examples whose label is not the target class (binary: target 1 is +1, 0 is -1)."""
    if y.is_floating_point():
        return y != binary_target_label(target)
    return y != target


# ----------------------------------------------------------------------------- costs

# one cost function per attack kind (advcore.cost.AttackCost per example and radius)
ATTACK_COSTS: dict[str, Callable[[AttackSpec, AttackContext], AttackCost]] = {
    "fgsm": fgsm_cost, "pgd": pgd_cost, "feature_direction": direction_cost,
    "apgd": apgd_cost, "autoattack": autoattack_cost}


def attack_cost(attack: AttackSpec, ctx: AttackContext) -> AttackCost:
    if attack.kind not in ATTACK_COSTS:
        raise NotImplementedError(f"no cost function for attack kind {attack.kind!r}")
    return ATTACK_COSTS[attack.kind](attack, ctx)


def perturb_cost(attack: AttackSpec, ctx: AttackContext, n_examples: float) -> tuple[float, float]:
    """(FLOPs, working bytes) of `perturb` on n_examples examples (all seeds) at one radius."""
    kind = attack_cost(attack, ctx)
    return n_examples * kind.flops, n_examples * (kind.bytes + FLOAT * ctx.in_elements)


def robust_accuracy_cost(attack: AttackSpec, ctx: AttackContext, n_seeds: int, n_points: int,
                         name: str, extra: tuple[Factor, ...] = ()) -> tuple[Term, Term]:
    """(FLOPs term, peak-bytes term) of one `robust_accuracy` call on n_points per seed.

    Radii are stacked into the example dim in chunks of MAX_STACKED_ELEMENTS per seed; a
    gradient attack adds a random-noise forward (with its subspace sampling), and one forward
    + input gradient on the clean points for the masking flags; a final forward per stacked
    example scores the fixed-direction and the targeted attacks (the others return their
    margins). PGD's and APGD's early exit is not counted: the price is an upper bound."""
    kind = attack_cost(attack, ctx)
    R, D, F = len(attack.radii), ctx.in_elements, ctx.model.forward
    chunk = min(R, max(1, MAX_STACKED_ELEMENTS // max(n_points * D, 1)))
    gradient = attack.kind != "feature_direction"
    scored = not gradient or (attack.targeted and attack.target is not None)
    per_example = kind.flops + F * scored
    if gradient:
        K = subspace_directions(attack.subspace, ctx.data.features)
        per_example += F + 2 * projection_flops(K, D)
    flops = n_seeds * n_points * (R * per_example + (ctx.model.input_gradient if gradient else 0))
    stacked = n_seeds * chunk * n_points  # examples in one batched chunk
    working = stacked * (kind.bytes + D * FLOAT)  # + the stacked inputs
    flags = n_seeds * n_points * (ctx.model.backward_bytes + 3 * D * FLOAT) if gradient else 0
    factors = (Factor((*ctx.loc, "radii"), R, 10), *kind.factors, *extra, *ctx.model.factors,
               *ctx.data.size)
    return (term(name, flops, factors),
            term(name, max(working, flags), Factor((*ctx.loc, "radii"), chunk, 10),
                 *extra, *ctx.model.factors, *ctx.data.size))

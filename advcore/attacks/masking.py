"""AutoAttack-style checks that a robust accuracy is not an artefact of gradient masking.

A gradient attack finds nothing where the input gradient vanishes (flat/step-like models, or a
cross-entropy loss saturated to 0 in floating point), and the point then *looks* robust. We flag:
zero input gradients among correctly classified points, a saturated CE loss, robust accuracy that
rises with the radius, and random noise in the ball beating the attack.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import Tensor

from advcore.attacks.losses import attack_loss, margin, saturation

ZERO_GRAD_L1 = 1e-8  # AutoAttack's threshold on ||grad_x loss||_1 for "zero gradient"
SATURATED_LOSS = 1e-7  # CE below this: p_y rounds to 1 in float32 (textbook CE gradients break)
SUSPICIOUS_FRACTION = 0.01  # zero gradients on more than 1% of the correctly classified points
SATURATED_MAJORITY = 0.5  # a CE attack on a model whose loss is ~0 on most correct points


def gradient_flags(model: Callable[[Tensor], Tensor], x: Tensor, y: Tensor, *, loss: str,
                   target: int | None, feature_ndim: int) -> dict[str, float]:
    """Fractions of correctly classified clean points with a zero input gradient of the attack
    loss, and with a saturated cross-entropy loss."""
    with torch.enable_grad():
        x_req = x.detach().requires_grad_(True)
        logits = model(x_req)
        objective = attack_loss(logits, y, loss, target).sum()
        grad = None
        if objective.requires_grad:
            (grad,) = torch.autograd.grad(objective, x_req, allow_unused=True)
    if grad is None:  # the output does not depend on the input at all
        grad = torch.zeros_like(x_req)
    with torch.no_grad():
        correct = margin(logits.detach(), y) > 0  # (*lead)
        n_correct = correct.sum().clamp_min(1)
        grad_l1 = grad.abs().flatten(-feature_ndim).sum(-1)  # (*lead)
        zero = (grad_l1 < ZERO_GRAD_L1) & correct
        saturated = (saturation(logits.detach(), y) < SATURATED_LOSS) & correct
    return {"zero_grad_fraction": float(zero.sum() / n_correct),
            "saturated_fraction": float(saturated.sum() / n_correct)}


RISE_TOLERANCE = 0.005  # half a percentage point: a random start may cost a point or so


def rises_with_radius(accuracy: Tensor, radii: list[float]) -> bool:
    """True if accuracy (R, ...) increases as the radius grows (a symptom of masking: a larger
    ball contains every perturbation of a smaller one)."""
    order = torch.tensor(sorted(range(len(radii)), key=lambda i: radii[i]))
    ordered = accuracy[order.to(accuracy.device)]
    return bool((ordered[1:] > ordered[:-1] + RISE_TOLERANCE).any()) if len(radii) > 1 else False


def verdict(flags: dict[str, Any], loss: str) -> dict[str, Any]:
    """Add `suspicious` (bool) and human-readable `reasons` to the flags."""
    reasons = []
    if flags.get("zero_grad_fraction", 0.0) > SUSPICIOUS_FRACTION:
        reasons.append(f"{flags['zero_grad_fraction']:.1%} of correct points have zero input "
                       "gradient: a gradient attack cannot move them")
    if loss == "ce" and flags.get("saturated_fraction", 0.0) > SATURATED_MAJORITY:
        reasons.append(f"cross-entropy saturated on {flags['saturated_fraction']:.1%} of correct "
                       "points: use loss='margin'")
    if flags.get("rises_with_radius"):
        reasons.append("the attack's accuracy rises with the radius somewhere")
    if flags.get("noise_stronger_fraction", 0.0) > 0:
        reasons.append(f"random noise broke {flags['noise_stronger_fraction']:.2%} of points "
                       "the attack did not")
    return {**flags, "suspicious": bool(reasons), "reasons": reasons}

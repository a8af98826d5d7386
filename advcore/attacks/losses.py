"""Attack objectives for binary heads (logits (*lead), y in {-1,+1}) and k-class heads
(logits (*lead, C), y long).

The margin is the signed distance from a wrong decision: y*f for a binary head,
z_y - max_{j != y} z_j for k classes; a point counts as correct iff its margin is > 0.
The CW-style margin loss is the negated margin: unlike cross-entropy it keeps a useful gradient
when the model is confidently right, so a saturated loss cannot fake robustness.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def is_binary(logits: Tensor, y: Tensor) -> bool:
    """A binary head returns one logit per example, shaped like y."""
    if logits.shape == y.shape:
        return True
    if logits.shape == y.shape + (1,):
        return True
    if logits.shape[:-1] == y.shape:
        return False
    raise ValueError(f"logits {tuple(logits.shape)} do not match labels {tuple(y.shape)}")


def _binary_logit(logits: Tensor, y: Tensor) -> Tensor:
    return logits.squeeze(-1) if logits.shape == y.shape + (1,) else logits


def _cross_entropy(logits: Tensor, cls: Tensor) -> Tensor:
    """-log softmax(z)_cls per example, for any leading dims, written as
    softplus(logsumexp_{j != cls} z_j - z_cls): the same value, but its gradient keeps the exact
    direction sum_j q_j (grad z_j - grad z_cls) until the loss underflows. The textbook form
    rounds p_cls to 1 once z_cls leads by ~17 (float32) and silently drops the grad z_cls term."""
    z_cls = logits.gather(-1, cls.unsqueeze(-1)).squeeze(-1)
    others = logits.scatter(-1, cls.unsqueeze(-1), float("-inf"))
    return F.softplus(torch.logsumexp(others, dim=-1) - z_cls)


def class_margin(logits: Tensor, cls: Tensor) -> Tensor:
    """z_cls - max_{j != cls} z_j for k-class logits (*lead, C) and class indices (*lead)."""
    z_cls = logits.gather(-1, cls.unsqueeze(-1)).squeeze(-1)
    others = logits.scatter(-1, cls.unsqueeze(-1), float("-inf"))
    return z_cls - others.amax(dim=-1)


def margin(logits: Tensor, y: Tensor) -> Tensor:
    """Per-example margin of the true label (*lead); > 0 means correctly classified."""
    if is_binary(logits, y):
        return y.to(logits.dtype) * _binary_logit(logits, y)
    return class_margin(logits, y.long())


def binary_target_label(target: int) -> float:
    """Binary heads: target class 1 is the label +1, target class 0 the label -1."""
    if target not in (0, 1):
        raise ValueError(f"binary targets are 0 or 1, got {target}")
    return 1.0 if target == 1 else -1.0


def attack_loss(logits: Tensor, y: Tensor, loss: str, target: int | None = None) -> Tensor:
    """Per-example objective the attacker MAXIMISES (*lead).

    Untargeted: ce -> cross-entropy / logistic loss of y; margin -> -margin(y).
    Targeted (class `target`): ce -> -CE(target); margin -> margin of the target class.
    """
    binary = is_binary(logits, y)
    if target is None:
        if loss == "margin":
            return -margin(logits, y)
        if binary:
            return F.softplus(-y.to(logits.dtype) * _binary_logit(logits, y))
        return _cross_entropy(logits, y.long())
    if binary:
        t = torch.full_like(y, binary_target_label(target), dtype=logits.dtype)
        m = t * _binary_logit(logits, y)
        return m if loss == "margin" else -F.softplus(-m)
    t = torch.full(y.shape, target, dtype=torch.long, device=logits.device)
    if loss == "margin":
        return class_margin(logits, t)
    return -_cross_entropy(logits, t)


def attacker_score(logits: Tensor, y: Tensor, target: int | None = None) -> Tensor:
    """What the attacker drives down, per example (*lead): the true margin when untargeted,
    minus the target class's margin when targeted (< 0 means the target was reached).
    Used to keep each example's worst case over iterates and restarts."""
    if target is None:
        return margin(logits, y)
    return -attack_loss(logits, y, "margin", target)


def saturation(logits: Tensor, y: Tensor) -> Tensor:
    """Per-example cross-entropy/logistic loss of the true label (*lead); ~0 means its gradient
    has vanished in floating point (the saturation that masks gradients for CE attacks)."""
    return attack_loss(logits, y, "ce")

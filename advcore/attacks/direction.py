"""The fixed, model-independent feature-direction attack.

For binary labels the perturbation is -radius * y * u with u the data model's attack direction
(e.g. the feature-averaging direction sum_{J+} mu_j - sum_{J-} mu_j) scaled to unit norm: the
same shift for every model, so it cannot be fooled by gradient masking.
"""

from __future__ import annotations

import torch
from torch import Tensor

from advcore.attacks.norms import ball_norm, bcast
from advcore.cost import FLOAT, AttackContext, AttackCost


def _unit(direction: Tensor, norm: str, feature_ndim: int) -> Tensor:
    n = ball_norm(direction, norm, feature_ndim)
    return direction / bcast(n.clamp_min(1e-12), direction)


def direction_delta(x: Tensor, y: Tensor, radius: Tensor | float, direction: Tensor, *,
                    norm: str, feature_ndim: int) -> Tensor:
    """The perturbation (*lead, *F) moving each example by `radius` against its own label.

    Binary y (float +-1): direction is (*F) or per seed (*B, *F) with B = lead[:-1];
    delta = -radius * y * direction / ||direction||.
    Class-index y (long): direction holds one direction per class, (C, *F) or (*B, C, *F);
    delta = -radius * direction[y] / ||direction[y]|| (away from the example's own feature).
    `norm` picks the unit: ||.||_2 for l2, ||.||_inf for linf.
    """
    n_batch = x.dim() - feature_ndim - 1  # number of B dims before the example dim
    feat_shape = x.shape[-feature_ndim:]
    if y.is_floating_point():
        d = direction if direction.dim() == feature_ndim else direction.unsqueeze(n_batch)
        return -bcast(radius * y.to(x.dtype), x) * _unit(d, norm, feature_ndim).to(x.dtype)
    if tuple(direction.shape) in (tuple(feat_shape), tuple(x.shape[:n_batch]) + tuple(feat_shape)):
        raise ValueError("a single (binary) attack direction needs binary +-1 labels; "
                         "attack the binary read-out (readout='binary') or pass (C, *F) directions")
    if direction.dim() == feature_ndim + 1:  # (C, *F) shared by all seeds
        picked = direction[y]  # (*lead, *F)
    else:  # (*B, C, *F): pick per seed
        n_classes = direction.shape[n_batch]
        flat_dir = direction.reshape(-1, n_classes, feat_shape.numel())  # (B, C, D)
        flat_y = y.reshape(flat_dir.shape[0], -1)  # (B, N)
        rows = torch.arange(flat_dir.shape[0], device=y.device).unsqueeze(1)
        picked = flat_dir[rows, flat_y].reshape(x.shape)
    return -bcast(radius, x) * _unit(picked, norm, feature_ndim).to(x.dtype)


def direction_cost(attack, ctx: AttackContext) -> AttackCost:
    """A fixed shift per example: no model passes; the shift (and its clamped copy in a box).
    The data directions: one forward pass per direction, the directions and the best shift."""
    inputs = 1 + (attack.box is not None)
    if attack.directions == "data":
        from advcore.attacks.apgd import data_starts

        K = data_starts(ctx, pairs=None)
        return AttackCost(flops=K * ctx.model.forward,
                          bytes=(inputs + 1 + K) * ctx.in_elements * FLOAT + ctx.model.eval_bytes,
                          factors=())
    return AttackCost(flops=0.0, bytes=inputs * ctx.in_elements * FLOAT + ctx.model.eval_bytes,
                      factors=())

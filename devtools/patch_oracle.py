"""The patch CNN seen by an independent attack: one seed's model as a plain function, and
torchattacks' APGD-T on it. Shared by the patch science tests and benchmarks/patch_reliability.py."""

from __future__ import annotations

import torch

from advcore.learners.patch_cnn import smoothed_relu


def seed_model(model, s: int):
    """Seed s's patch CNN as a plain function (N, P, d) -> (N, k)."""
    w = model.w.detach()[s]  # (k, m, d)
    k, m, d = w.shape
    filters = w.reshape(k * m, d).T

    def f(x):
        pre = x.reshape(x.shape[0], -1, d) @ filters  # (N, P, k*m)
        return smoothed_relu(pre, model.q, model.rho).reshape(x.shape[0], -1, k, m).sum((1, 3))
    return f


def torchattacks_apgdt(f, x, y, eps: float, k: int, seed: int) -> float:
    """Accuracy of `f` under torchattacks' APGD-T (targeted DLR, 100 steps, all k-1 targets) at
    l-inf `eps`. Patches are unbounded, so they are mapped affinely into [0, 1] with room for
    the ball: torchattacks' clamp then removes nothing."""
    import torchattacks

    lo, hi = float(x.min()) - 2 * eps, float(x.max()) + 2 * eps
    scale = hi - lo
    wrapped = torch.nn.Module()
    wrapped.forward = lambda z: f(lo + scale * z.reshape(-1, *x.shape[1:]))  # any sub-batch
    z = ((x - lo) / scale).reshape(x.shape[0], 1, *x.shape[1:])
    attack = torchattacks.APGDT(wrapped, norm="Linf", eps=eps / scale, steps=100, n_restarts=1,
                                n_classes=k, seed=seed)
    z_adv = attack(z, y)
    with torch.no_grad():
        return float((f(lo + scale * z_adv.reshape(x.shape)).argmax(1) == y).float().mean())

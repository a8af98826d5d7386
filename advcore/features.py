"""Robust / non-robust features of real images (science.md §B item 3; Ilyas et al. 2019).

A network's representation G (its penultimate layer) only "sees" some directions of input
space. Reconstructing x_hat from noise so that G(x_hat) ~= G(x) writes into the noise exactly
those directions: for a standard model they are the brittle, non-robust features; for an
adversarially trained model the robust ones. Per class, the top singular directions of the
reconstructions' changes (x_hat - x_0) form that class's feature basis; NRF-PGD / RF-PGD are
targeted PGD attacks whose perturbation is projected onto the span of the source and target
classes' bases (advcore.attacks' `subspace_basis`).

All functions are batched over the leading seed dim S and over examples.
"""

from __future__ import annotations

import torch

from advcore.attacks import perturb


def reconstruct(rep_fn, x: torch.Tensor, *, steps: int, step_size: float,
                box: tuple[float, float] | None, generators: list[torch.Generator],
                start: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Optimise x_hat from x_0 so that rep_fn(x_hat) ~= rep_fn(x); x_0 = `start` (S, N, *F) or
    uniform noise in the box drawn from `generators` (CPU, one per seed).

    x (S, N, *F); rep_fn maps (S, N, *F) -> (S, N, H). Each example takes normalised l2
    gradient steps of the relative loss ||G(x_hat) - G(x)||^2 / ||G(x)||^2 with a linearly
    decaying step size, projected onto the box. Returns (x_hat, x_0), both (S, N, *F)."""
    lo, hi = box if box is not None else (0.0, 1.0)
    with torch.no_grad():
        target = rep_fn(x)  # (S, N, H)
        scale = target.pow(2).sum(-1).clamp_min(1e-12)  # (S, N)
        if start is None:
            noise = torch.stack([torch.rand(x.shape[1:], generator=g) for g in generators]
                                ).to(x.device)  # (S, N, *F): seed s from its own CPU generator
            x0 = lo + (hi - lo) * noise
        else:
            x0 = start.detach()
    x_hat = x0.clone()
    feat_dims = tuple(range(2, x.dim()))
    for t in range(steps):
        x_hat.requires_grad_(True)
        loss = (rep_fn(x_hat) - target).pow(2).sum(-1) / scale  # (S, N)
        (grad,) = torch.autograd.grad(loss.sum(), x_hat)
        with torch.no_grad():
            norm = grad.flatten(2).norm(dim=-1).clamp_min(1e-12)  # (S, N)
            lr = step_size * (1.0 - t / steps)
            x_hat = x_hat - lr * grad / norm.reshape(*norm.shape, *(1,) * len(feat_dims))
            x_hat = x_hat.clamp(lo, hi) if box is not None else x_hat
    return x_hat.detach(), x0


def per_class_examples(y: torch.Tensor, k: int, n: int) -> torch.Tensor:
    """(S, k, n) indices of the first n examples of each class in every seed's labels y (S, N).
    Raises if some class has fewer than n examples."""
    counts = torch.nn.functional.one_hot(y, k).sum(1)  # (S, k)
    if int(counts.min()) < n:
        raise ValueError(f"reconstruction needs {n} examples per class; the smallest class has "
                         f"{int(counts.min())}")
    order = torch.argsort(y, dim=1, stable=True)  # (S, N) grouped by class
    starts = torch.cumsum(counts, 1) - counts  # (S, k) first position of each class
    pos = starts[..., None] + torch.arange(n, device=y.device)  # (S, k, n)
    return order.gather(1, pos.flatten(1)).reshape(y.shape[0], k, n)


def class_bases(changes: torch.Tensor, n_directions: int) -> torch.Tensor:
    """changes (S, k, n, *F) reconstruction changes per class -> (S, k, K, *F) orthonormal top-K
    right singular directions of each class's (n, D) change matrix."""
    S, k, n = changes.shape[:3]
    feat = changes.shape[3:]
    _, _, vh = torch.linalg.svd(changes.reshape(S, k, n, -1).double(), full_matrices=False)
    K = min(n_directions, vh.shape[-2])
    return vh[..., :K, :].to(changes.dtype).reshape(S, k, K, *feat)


def feature_bases(model, x_train: torch.Tensor, y_fine: torch.Tensor, k: int, recon, *,
                  box, generators: list[torch.Generator]) -> torch.Tensor:
    """(S, k, K, *F) per-class feature bases of `model` (eval mode) from recon.n_per_class
    reconstructions per class (recon: advcore.spec.ReconstructionSpec)."""
    n = recon.n_per_class
    idx = per_class_examples(y_fine, k, n)  # (S, k, n)
    S = x_train.shape[0]
    chosen = x_train[torch.arange(S, device=x_train.device)[:, None], idx.flatten(1)]  # (S, k*n, *F)
    start = None
    if recon.init == "data":  # start each from a chosen image of a random OTHER class
        shift = torch.stack([torch.randint(1, k, (k * n,), generator=g) for g in generators]) * n
        other = (torch.arange(k * n) + shift) % (k * n)  # (S, k*n): block c -> block c + shift
        start = chosen[torch.arange(S, device=chosen.device)[:, None], other.to(chosen.device)]
    x_hat, x0 = reconstruct(model.representation, chosen, steps=recon.steps, start=start,
                            step_size=recon.step_size, box=box, generators=generators)
    changes = (x_hat - x0).reshape(S, k, recon.n_per_class, *x_train.shape[2:])
    return class_bases(changes, recon.n_directions)


def pair_basis(bases: torch.Tensor, source: int, target: int) -> torch.Tensor:
    """(S, 2K, *F): the source and target classes' directions (orthonormalised by the attack)."""
    return torch.cat([bases[:, source], bases[:, target]], dim=1)


def targeted_success(model, x: torch.Tensor, y_fine: torch.Tensor, source: int, target: int,
                     attack, radius: float, *, basis: torch.Tensor, feature_ndim: int,
                     generators: list[torch.Generator]) -> torch.Tensor:
    """(S,) fraction of source-class points (x (S, N, *F), y_fine (S, N)) that a targeted PGD
    restricted to span(basis) moves into class `target` (attack: an AttackSpec, made targeted)."""
    is_source = y_fine == source  # (S, N)
    count = is_source.sum(1)  # (S,)
    n = max(int(count.max()), 1)
    first = torch.argsort((~is_source).to(torch.uint8), dim=1, stable=True)[:, :n]  # source first
    S = x.shape[0]
    xs, ys = x[torch.arange(S, device=x.device)[:, None], first], y_fine.gather(1, first)  # (S, n, ..)
    valid = (torch.arange(n, device=x.device)[None] < count[:, None]).float()  # (S, n) padding off
    targeted = attack.model_copy(update={"targeted": True, "target": target})
    x_adv = perturb(model, xs, ys, targeted, radius, feature_ndim=feature_ndim,
                    subspace_basis=basis, generator=generators)
    with torch.no_grad():
        hit = (model(x_adv).argmax(-1) == target).float()  # (S, n)
    return (hit * valid).sum(1) / valid.sum(1).clamp_min(1)


# ----------------------------------------------------------------------------- cost


def reconstruction_cost(recon, model, data, n_seeds: int) -> tuple[float, float]:
    """(FLOPs, peak bytes) of `feature_bases` for one model: k * n_per_class reconstructions,
    each a target representation then `steps` forward + input-gradient passes through G, and
    a float64 SVD of the changes."""
    n = n_seeds * (data.n_classes or 1) * recon.n_per_class  # reconstructed examples
    D = data.in_elements
    flops = n * model.representation * (1 + 2 * recon.steps)
    # chosen images, start, x_hat, x_0, gradient, step temporaries; G's activations; the SVD
    working = n * (8 * D * 4 + model.backward_bytes) + 3 * n * D * 8
    return flops, working

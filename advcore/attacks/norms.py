"""Per-example norms, balls and projections over the trailing "ball" dims of a perturbation.

A perturbation has shape (*lead, *F). Its budget is a ball over the last `ndim` dims: ndim =
feature_ndim for a global budget, 1 for a per-patch budget on (P, d) inputs (one ball per patch).
Radii are tensors over the example dims (*lead) -- or floats -- so one call can carry a different
radius per example (that is how all radii of an evaluation run in one batched computation).
"""

from __future__ import annotations

import torch
from torch import Tensor

_TINY = 1e-12  # guards divisions by a zero norm (radius 0, zero gradients)


def bcast(value: Tensor | float, like: Tensor) -> Tensor | float:
    """Append singleton dims so a per-example tensor (*lead) broadcasts against `like`."""
    if not isinstance(value, Tensor):
        return value
    return value.reshape(value.shape + (1,) * (like.dim() - value.dim()))


def ball_norm(t: Tensor, norm: str, ndim: int) -> Tensor:
    """l2 or linf norm over the last `ndim` dims: (*lead, *B) -> (*lead)."""
    flat = t.flatten(-ndim) if ndim > 1 else t
    if norm == "l2":
        return flat.norm(dim=-1)
    if norm == "linf":
        return flat.abs().amax(dim=-1)
    raise ValueError(f"unknown norm {norm!r}")


def project_ball(delta: Tensor, norm: str, radius: Tensor | float, ndim: int) -> Tensor:
    """Euclidean projection onto the norm ball of `radius` (one ball per trailing `ndim` block).

    `radius` is a float or a tensor over the leading example dims of `delta`.
    """
    if norm == "linf":
        r = bcast(radius, delta)
        return torch.clamp(delta, min=-r, max=r)
    n = ball_norm(delta, "l2", ndim)  # (*lead, [P])
    r = bcast(radius, n)
    scale = torch.clamp(r / n.clamp_min(_TINY), max=1.0)
    return delta * scale.reshape(scale.shape + (1,) * ndim)


def shrink_into_ball(delta: Tensor, norm: str, radius: Tensor | float, ndim: int,
                     example_ndim: int, grow: bool = False) -> Tensor:
    """Scale each example's whole perturbation by ONE factor so every ball constraint holds.

    Unlike `project_ball` this keeps the perturbation's direction (so it stays in a subspace);
    `example_ndim` is the number of trailing dims forming one example (feature_ndim). With
    `grow` it also scales up, to the boundary of the tightest ball.
    """
    n = ball_norm(delta, norm, ndim)  # (*lead, *extra) with extra = feature_ndim - ndim dims
    r = bcast(radius, n)
    scale = r / n.clamp_min(_TINY)
    scale = scale if grow else scale.clamp(max=1.0)
    extra = example_ndim - ndim
    if extra:
        scale = scale.flatten(-extra).amin(dim=-1)  # (*lead): the tightest ball decides
    return delta * scale.reshape(scale.shape + (1,) * example_ndim)


def steepest_direction(grad: Tensor, norm: str, ndim: int) -> Tensor:
    """Unit steepest-ascent direction for the norm: sign(g) for linf, g/||g||_2 for l2."""
    if norm == "linf":
        return grad.sign()
    n = ball_norm(grad, "l2", ndim)
    return grad / n.clamp_min(_TINY).reshape(n.shape + (1,) * ndim)


def steepest_direction_(grad: Tensor, norm: str, ndim: int) -> Tensor:
    """steepest_direction written into `grad` itself (a gradient nothing else reads): no new
    input-sized tensor, whose fresh pages cost as much as the arithmetic on a CPU."""
    if not grad.is_contiguous():  # e.g. an expanded gradient: its elements share memory
        grad = grad.contiguous()
    if norm == "linf":
        return grad.sign_()
    n = ball_norm(grad, "l2", ndim)
    return grad.div_(n.clamp_min_(_TINY).reshape(n.shape + (1,) * ndim))


Generator = torch.Generator | list[torch.Generator] | None


def random_like(like: Tensor, shape: tuple[int, ...], kind: str, generator: Generator) -> Tensor:
    """torch.rand ("uniform") / torch.randn ("normal") of `shape` with like's dtype and device.

    A list of generators means shape[0] is the seed dim: seed s draws its slice from generator s,
    exactly as a separate run with that generator alone would.
    """
    if isinstance(generator, (list, tuple)):
        if len(generator) != shape[0]:
            raise ValueError(f"{len(generator)} generators for a leading dim of {shape[0]}")
        return torch.stack([random_like(like, shape[1:], kind, g) for g in generator])
    fn = torch.rand if kind == "uniform" else torch.randn
    device = generator.device if generator is not None else like.device  # a CPU generator
    return fn(shape, dtype=like.dtype, device=device, generator=generator).to(like.device)


def sample_ball(like: Tensor, norm: str, radius: Tensor | float, ndim: int,
                generator: Generator = None) -> Tensor:
    """Uniform samples in the ball (one per trailing `ndim` block), shaped like `like`."""
    if norm == "linf":
        u = random_like(like, tuple(like.shape), "uniform", generator) * 2 - 1
        return u * bcast(radius, u)
    direction = steepest_direction(random_like(like, tuple(like.shape), "normal", generator),
                                   "l2", ndim)
    lead_shape = tuple(like.shape[:-ndim])
    n_elems = like.shape[-ndim:].numel()
    u = random_like(like, lead_shape, "uniform", generator) ** (1.0 / n_elems)
    return direction * bcast(u * bcast(radius, u), direction)

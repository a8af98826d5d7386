"""Subspace-restricted perturbations: delta is projected onto the span of given directions
(e.g. the patch model's robust or non-robust features) -- NRF-PGD / RF-PGD of science.md §B.

A basis comes in one of two forms:
- per example: (K, *F) or per seed (*B, K, *F) -- each direction spans a whole input;
- per patch (feature_ndim >= 2): (K, d) or per seed (*B, K, d) with d = F[-1] -- each patch of
  the input is projected onto span(directions), i.e. the subspace is span{u_j at patch p}.
`basis_ndim` (feature_ndim or 1) says which; it is inferred from the shapes when unambiguous.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from advcore.attacks.norms import Generator, bcast, random_like, shrink_into_ball


@dataclass
class Subspace:
    onb: Tensor  # orthonormal rows, (K, D) or batched so that `project` broadcasts
    ndim: int  # trailing dims each basis vector spans (feature_ndim, or 1 = per patch)
    dim: int  # dimension of the subspace of one example (K, or K * number of patches)

    def project(self, delta: Tensor) -> Tensor:
        """Orthogonal projection of (*lead, *F) onto the subspace."""
        flat = delta.flatten(-self.ndim) if self.ndim > 1 else delta  # (..., D)
        coef = flat @ self.onb.transpose(-1, -2)  # (..., K)
        return (coef @ self.onb).reshape(delta.shape)

    def sample(self, like: Tensor, norm: str, radius: Tensor | float, ball_ndim: int,
               feature_ndim: int, generator: Generator = None) -> Tensor:
        """A Gaussian direction of the subspace scaled to the ball's boundary times U^(1/dim):
        uniform in the subspace's ball for a global l2 budget, a feasible random point else."""
        g = self.project(random_like(like, tuple(like.shape), "normal", generator))
        to_boundary = shrink_into_ball(g, norm, radius, ball_ndim, feature_ndim, grow=True)
        lead_shape = tuple(like.shape[:-feature_ndim])
        u = random_like(like, lead_shape, "uniform", generator) ** (1.0 / self.dim)
        return to_boundary * bcast(u, to_boundary)


def orthonormal_rows(flat: Tensor) -> Tensor:
    """(..., K, D) directions -> (..., K, D) orthonormal rows spanning the same space (QR)."""
    q, _ = torch.linalg.qr(flat.transpose(-1, -2))  # (..., D, K)
    return q.transpose(-1, -2)


def make_subspace(basis: Tensor, x_shape: tuple[int, ...], feature_ndim: int,
                  basis_ndim: int | None = None) -> Subspace:
    """Orthonormalise `basis` and shape it to broadcast against perturbations of `x_shape`
    (*B, N, *F)."""
    feat = tuple(x_shape[-feature_ndim:])
    batch = tuple(x_shape[:len(x_shape) - feature_ndim - 1])  # B: the seed dims
    full_ok = tuple(basis.shape[-feature_ndim:]) == feat and \
        tuple(basis.shape[:-feature_ndim - 1]) in ((), batch)
    patch_ok = feature_ndim >= 2 and basis.shape[-1] == feat[-1] and \
        tuple(basis.shape[:-2]) in ((), batch)
    if basis_ndim is None:
        if full_ok and patch_ok:
            raise ValueError(f"basis {tuple(basis.shape)} fits both a per-example and a per-patch"
                             " reading: pass basis_ndim")
        if not (full_ok or patch_ok):
            raise ValueError(f"basis {tuple(basis.shape)} does not fit inputs {x_shape}")
        basis_ndim = feature_ndim if full_ok else 1
    if basis_ndim == feature_ndim:
        onb = orthonormal_rows(basis.flatten(-feature_ndim) if feature_ndim > 1 else basis)
        return Subspace(onb, feature_ndim, basis.shape[-feature_ndim - 1])  # (*B?, K, D)
    onb = orthonormal_rows(basis)  # (*B?, K, d)
    if basis.dim() > 2:  # per seed: (*B, K, d) -> (*B, 1, .., K, d): the (N, *F[:-2]) dims
        onb = onb.reshape(*batch, *(1,) * (feature_ndim - 1), *onb.shape[-2:])
    n_patches = int(torch.tensor(feat[:-1]).prod())
    return Subspace(onb, 1, basis.shape[-2] * n_patches)


def subspace_directions(subspace, features: dict[str, tuple[int, int]]) -> int:
    """K, the number of directions an AttackSpec's `subspace` spans per ball (0: no subspace);
    `features` maps a data feature set to (directions, elements) (advcore.cost.DataCost)."""
    if subspace is None:
        return 0
    if isinstance(subspace, str):
        return features.get(subspace, (0, 0))[0]
    return len(subspace)


def projection_flops(n_directions: int, elements: int) -> float:
    """One `Subspace.project` of an example with `elements` entries onto K directions (per
    example or per patch alike): coefficients and back, 2 * (2 K elements)."""
    return 4.0 * n_directions * elements

"""The patch data model (science.md §B): sparse strong robust features, dense weak non-robust ones.

Class y owns a robust feature u_y and a non-robust feature v_y; all 2k directions are orthonormal
in R^d (a seeded QR of a Gaussian matrix). An input is P patches X = (x_1..x_P), x_p in R^d:
`n_robust` patches (the set J_R) carry alpha_p * u_y, the other P - n_robust carry beta_p * v_y,
and every patch gets N(0, sigma_n^2 I) noise. alpha_p / beta_p are fixed values or drawn
uniformly per (sample, patch) from a [lo, hi] range.

J_R is drawn at random per sample. The patch CNN sums over patches, so it cannot tell positions
apart and fixed positions would give the same training dynamics; random positions keep that
true for any position-aware model or attack too, at no cost (one topk over a (N, P) tensor).
Classes are balanced (n/k or n/k + 1 samples each, in a random order). There is no single
model-independent attack direction for k classes (it depends on y), so `attack_direction` is
None; the subspace attacks use `features["robust"]` / `features["non_robust"]` instead.
"""

from __future__ import annotations

import torch

from advcore.cost import FLOAT, DataCost, Factor, register_cost
from advcore.data.base import Dataset, register
from advcore.device import generator


def _orthonormal_rows(d: int, n: int, gen: torch.Generator) -> torch.Tensor:
    """(n, d) random orthonormal rows (QR of a Gaussian matrix, sign-fixed so Q is unique)."""
    q, r = torch.linalg.qr(torch.randn(d, n, generator=gen, dtype=torch.float64))
    return (q * torch.sign(torch.diagonal(r))).T.float()


def patch_features(d: int, k: int, gen: torch.Generator,
                   kind: str = "random_orthogonal") -> tuple[torch.Tensor, torch.Tensor]:
    """Robust U (k, d) and non-robust V (k, d): 2k orthonormal rows.

    sparse_robust: u_y = e_y and the v's are dense random directions in the other d - k
    coordinates (the l_inf lever of science.md's calibration notes)."""
    if kind == "sparse_robust":
        robust = torch.eye(d)[:k]
        non_robust = torch.zeros(k, d)
        non_robust[:, k:] = _orthonormal_rows(d - k, k, gen)
        return robust, non_robust
    basis = _orthonormal_rows(d, 2 * k, gen)  # (2k, d)
    return basis[:k].contiguous(), basis[k:].contiguous()


def _strength(value, shape: tuple[int, ...], gen: torch.Generator) -> torch.Tensor:
    """A fixed strength, or uniform in [lo, hi] per entry."""
    if isinstance(value, (list, tuple)):
        lo, hi = float(value[0]), float(value[1])
        return lo + (hi - lo) * torch.rand(shape, generator=gen)
    return torch.full(shape, float(value))


def sample_patches(spec, robust: torch.Tensor, non_robust: torch.Tensor, n: int,
                   gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """n samples: X (n, P, d) and labels y (n,) long."""
    k, d = robust.shape
    P = spec.patches
    y = (torch.arange(n) % k)[torch.randperm(n, generator=gen)]  # (n,) balanced classes
    robust_idx = torch.rand(n, P, generator=gen).topk(spec.n_robust, dim=1).indices  # (n, |J_R|)
    is_robust = torch.zeros(n, P, dtype=torch.bool).scatter_(1, robust_idx, True)  # (n, P)
    alpha = _strength(spec.alpha, (n, P), gen)  # (n, P)
    beta = _strength(spec.beta, (n, P), gen)  # (n, P)
    coef_u = torch.where(is_robust, alpha, 0.0)[..., None]  # (n, P, 1)
    coef_v = torch.where(is_robust, 0.0, beta)[..., None]  # (n, P, 1)
    signal = coef_u * robust[y][:, None, :] + coef_v * non_robust[y][:, None, :]  # (n, P, d)
    noise = torch.randn(n, P, d, generator=gen) * spec.sigma_n
    return signal + noise, y


@register("patch")
def build_patch(spec, seed: int) -> Dataset:
    gen = generator(seed, "data")
    robust, non_robust = patch_features(spec.d, spec.k, gen, spec.features)  # (k, d) each
    x_train, y_train = sample_patches(spec, robust, non_robust, spec.n_train, gen)
    x_test, y_test = sample_patches(spec, robust, non_robust, spec.n_test, gen)
    return Dataset(
        x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test,
        y_train_fine=y_train, y_test_fine=y_test, positive_classes=None,
        features={"robust": robust, "non_robust": non_robust}, attack_direction=None,
        feature_ndim=2, box=None, n_classes=spec.k,
    )


@register_cost("patch")
def cost(spec) -> DataCost:
    """Per seed: sampling a split keeps ~4 (n, P, d) tensors (two signal parts, their sum and
    the noise) beside the result."""
    n = max(spec.n_train, spec.n_test)
    P, d = spec.patches, spec.d
    return DataCost(
        n_train=spec.n_train, n_test=spec.n_test, in_shape=(P, d), n_classes=spec.k,
        binary=False, has_readout=False,
        features={"robust": (spec.k, d), "non_robust": (spec.k, d)},
        build_bytes=4 * n * P * d * FLOAT, host_bytes=0, n_loc=("data", "n_train"),
        size=(Factor(("data", "patches"), P, 128), Factor(("data", "d"), d, 64)))

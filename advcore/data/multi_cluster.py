"""Feature-averaging data (science.md §A): k orthogonal cluster means plus Gaussian noise.

Cluster j has mean mu_j (mutually orthogonal, norm `mean_norm`, default sqrt(d)); x = mu_j + xi,
xi ~ N(0, sigma^2 I). Clusters in J+ (`positive_clusters`) have binary label +1, the rest -1;
the fine label is j. Cluster sizes are balanced (every cluster gets n/k or n/k + 1 points, in a
random order) so small runs are not dominated by sampling imbalance.
"""

from __future__ import annotations

import math

import torch

from advcore.cost import FLOAT, DataCost, Factor, register_cost
from advcore.data.base import Dataset, register
from advcore.device import generator


def cluster_means(d: int, k: int, norm: float, kind: str, gen: torch.Generator) -> torch.Tensor:
    """(k, d) mutually orthogonal means of norm `norm`."""
    if kind == "orthonormal_basis":
        basis = torch.eye(d)[:k]
    else:  # random_orthogonal: QR of a Gaussian matrix
        q, r = torch.linalg.qr(torch.randn(d, k, generator=gen, dtype=torch.float64))
        basis = (q * torch.sign(torch.diagonal(r))).T.float()  # sign fix: unique Q
    return basis * norm


def _sample(means: torch.Tensor, n: int, sigma: float, gen: torch.Generator):
    k, d = means.shape
    clusters = (torch.arange(n) % k)[torch.randperm(n, generator=gen)]  # (n,) balanced
    noise = torch.randn(n, d, generator=gen) * sigma  # (n, d)
    return means[clusters] + noise, clusters


@register("multi_cluster")
def build_multi_cluster(spec, seed: int) -> Dataset:
    gen = generator(seed, "data")
    norm = spec.mean_norm if spec.mean_norm is not None else math.sqrt(spec.d)
    positive = spec.positive_clusters if spec.positive_clusters is not None else list(range(spec.k // 2))
    means = cluster_means(spec.d, spec.k, norm, spec.means, gen)  # (k, d)
    x_train, c_train = _sample(means, spec.n_train, spec.sigma, gen)
    x_test, c_test = _sample(means, spec.n_test, spec.sigma, gen)
    sign = -torch.ones(spec.k)
    sign[positive] = 1.0  # (k,) binary label of each cluster
    # the model-independent attack: push every point toward the other class's average mean
    direction = (sign[:, None] * means).sum(0)
    direction = direction / direction.norm()
    return Dataset(
        x_train=x_train, y_train=sign[c_train], x_test=x_test, y_test=sign[c_test],
        y_train_fine=c_train, y_test_fine=c_test, positive_classes=sorted(positive),
        features={"cluster": means}, attack_direction=direction, feature_ndim=1, box=None,
        n_classes=spec.k,
    )


@register_cost("multi_cluster")
def cost(spec) -> DataCost:
    """Per seed: the (k, d) float64 QR, and while a split is sampled its noise and gathered
    means (n, d) beside the result."""
    d, k = spec.d, spec.k
    n = max(spec.n_train, spec.n_test)
    return DataCost(
        n_train=spec.n_train, n_test=spec.n_test, in_shape=(d,), n_classes=k, binary=True,
        has_readout=True, features={"cluster": (k, d)},
        build_bytes=2 * n * d * FLOAT + 3 * d * k * 8, host_bytes=0, n_loc=("data", "n_train"),
        size=(Factor(("data", "d"), d, 3072),
              Factor(("data", "k"), k, 10)), has_direction=True)

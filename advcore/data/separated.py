"""Well-separated binary data in [0,1]^d (science.md §C): classes at distance >= 2*eps.

A random hyperplane <w, x> = c splits the points; every point closer than eps to it (in the
spec's norm: |<w,x> - c| / ||w||_dual) is rejected, so any two points of opposite classes are at
least 2*eps apart and a robust classifier of radius < eps exists. `linear` samples x uniformly in
the cube; `manifold` samples on a smooth k-dim manifold x = 0.5 + 0.4 sin(z M), z ~ U[0,1]^k.
Rejection is vectorised: draw a pool, keep the first n accepted points, grow the pool if short.
"""

from __future__ import annotations

import torch

from advcore.cost import FLOAT, DataCost, Factor, register_cost
from advcore.data.base import Dataset, register
from advcore.device import generator


def _draw(spec, n: int, gen: torch.Generator, embed: torch.Tensor | None) -> torch.Tensor:
    if spec.variant == "linear":
        return torch.rand(n, spec.d, generator=gen)  # (n, d)
    z = torch.rand(n, spec.manifold_dim, generator=gen)  # (n, k)
    return 0.5 + 0.4 * torch.sin(z @ embed)  # (n, d)


def _accept(spec, n: int, w: torch.Tensor, c: float, gen, embed) -> tuple[torch.Tensor, torch.Tensor]:
    dual = w.abs().sum() if spec.norm == "linf" else w.norm()  # distance = |<w,x>-c| / ||w||_*
    kept_x, kept_y, have = [], [], 0
    for _ in range(50):  # grows the pool; each round is one vectorised draw
        pool = _draw(spec, max(4 * (n - have), 64), gen, embed)
        score = (pool @ w - c) / dual  # signed distance to the hyperplane
        ok = score.abs() >= spec.eps
        kept_x.append(pool[ok])
        kept_y.append(torch.sign(score[ok]))
        have += int(ok.sum())
        if have >= n:
            break
    else:
        raise ValueError(f"eps={spec.eps} rejects almost every point; lower eps")
    return torch.cat(kept_x)[:n], torch.cat(kept_y)[:n]


@register("separated")
def build_separated(spec, seed: int) -> Dataset:
    gen = generator(seed, "data")
    embed = None
    if spec.variant == "manifold":
        embed = torch.randn(spec.manifold_dim, spec.d, generator=gen) * 3.0  # (k, d)
    w = torch.randn(spec.d, generator=gen)
    c = float((_draw(spec, 4096, gen, embed) @ w).median())  # balanced classes
    x_train, y_train = _accept(spec, spec.n_train, w, c, gen, embed)
    x_test, y_test = _accept(spec, spec.n_test, w, c, gen, embed)
    return Dataset(
        x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test,
        features={"separator": (w / w.norm())[None]}, attack_direction=w / w.norm(),
        feature_ndim=1, box=None,
    )


@register_cost("separated")
def cost(spec) -> DataCost:
    """Per seed: rejection pools of 4n draws (and their accepted copies), and 4096 draws for
    the median."""
    n = max(spec.n_train, spec.n_test)
    return DataCost(
        n_train=spec.n_train, n_test=spec.n_test, in_shape=(spec.d,), n_classes=None,
        binary=True, has_readout=False, features={"separator": (1, spec.d)},
        build_bytes=max(8 * n, 4096) * spec.d * FLOAT, host_bytes=0, n_loc=("data", "n_train"),
        size=(Factor(("data", "d"), spec.d, 3072),), has_direction=True)

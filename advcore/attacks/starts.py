"""Start directions from the data model, for gradient attacks that would otherwise stall.

A two-layer ReLU net attacked at a point where every neuron of the attacked sign is switched off
has a zero gradient there, so PGD from the clean point or a small random start cannot move; the
data model's geometry gives directions that reach the cliff directly. Each is returned per
example, pointing against the example's label (unscaled: the attack scales it to its ball):

- the data model's attack direction (`direction`): -y * u for binary labels (the
  feature-averaging direction sum_{J+} mu_j - sum_{J-} mu_j), -u_y for per-class directions;
- the class-mean difference of the attacked points themselves: -y * (mean_{y=+1} x - mean_{y=-1} x)
  (binary labels; model-independent and available for any binary data);
- the opposite-cluster direction of a read-out over clusters: -u_own + sum_{l opposite} u_l with
  u the unit cluster means and `own` the example's nearest cluster of its own side
  (argmax_j <x, u_j> over clusters labelled like y): it lowers every opposite cluster's margin
  at once, the weakest direction of the sum read-out (science.md §A);
- the cluster pairs u_t - u_own (unit norm) for the opposite clusters t, nearest first (largest
  <x, u_t>): one of them is the weakest direction of the argmax read-out, which flips once
  <u_t - u_own, delta> reaches the gap between the two clusters' logits.
"""

from __future__ import annotations

import torch
from torch import Tensor

from advcore.attacks.norms import bcast


def _unit_rows(t: Tensor, feature_ndim: int) -> Tensor:
    flat = t.flatten(-feature_ndim)
    return (flat / flat.norm(dim=-1, keepdim=True).clamp_min(1e-12)).reshape(t.shape)


def class_mean_direction(x: Tensor, y: Tensor, feature_ndim: int) -> Tensor:
    """(*lead, *F): -y * (mean of the +1 points - mean of the -1 points), per seed."""
    n_batch = y.dim() - 1
    pos, neg = (y > 0).to(x.dtype), (y < 0).to(x.dtype)  # (*B, N)

    def mean(w: Tensor) -> Tensor:  # (*B, *F)
        return (bcast(w, x) * x).sum(n_batch) / bcast(w.sum(-1).clamp_min(1), x.sum(n_batch))

    diff = (mean(pos) - mean(neg)).unsqueeze(n_batch)  # (*B, 1, *F)
    return -bcast(y.to(x.dtype), x) * diff


def opposite_cluster_direction(x: Tensor, y: Tensor, clusters: Tensor, cluster_labels: Tensor,
                               feature_ndim: int) -> Tensor:
    """(*lead, *F): -u_own + sum_{clusters labelled -y} u_l, u the unit cluster means.

    clusters (k, *F) or per seed (*B, k, *F); cluster_labels (k,) in {-1, +1}."""
    units = _unit_rows(clusters.to(x.dtype), feature_ndim).flatten(-feature_ndim)  # (*B?, k, D)
    flat_x = x.flatten(-feature_ndim)  # (*lead, D)
    scores = flat_x @ units.transpose(-1, -2)  # (*lead, k)
    labels = cluster_labels.to(x.dtype)  # (k,)
    same = labels == y.to(x.dtype).unsqueeze(-1)  # (*lead, k): clusters of the own side
    own = scores.masked_fill(~same, float("-inf")).argmax(-1)  # (*lead)
    weights = (~same).to(x.dtype) - torch.nn.functional.one_hot(own, labels.shape[0]).to(x.dtype)
    return (weights @ units).reshape(x.shape)  # (*lead, k) @ (*B?, k, D)


def cluster_pair_directions(x: Tensor, y: Tensor, clusters: Tensor, cluster_labels: Tensor,
                            feature_ndim: int, limit: int | None = None) -> Tensor:
    """(*lead, K, *F): (u_t - u_own) / sqrt(2) for the K = min(limit, larger side) opposite
    clusters t nearest to each example (largest <x, u_t>); `own` as in
    opposite_cluster_direction. An example whose opposite side has fewer than K clusters gets
    own-side pairs (or zero) in the last slots: still feasible, merely weaker, directions."""
    units = _unit_rows(clusters.to(x.dtype), feature_ndim).flatten(-feature_ndim)  # (*B?, k, D)
    flat_x = x.flatten(-feature_ndim)  # (*lead, D)
    scores = flat_x @ units.transpose(-1, -2)  # (*lead, k)
    labels = cluster_labels.to(x.dtype)  # (k,)
    same = labels == y.to(x.dtype).unsqueeze(-1)  # (*lead, k)
    own = scores.masked_fill(~same, float("-inf")).argmax(-1)  # (*lead)
    n_side = int(max((labels > 0).sum(), (labels < 0).sum()))
    K = n_side if limit is None else min(limit, n_side)
    picks = scores.masked_fill(same, float("-inf")).topk(K, dim=-1).indices  # (*lead, K)
    k = labels.shape[0]
    # (*lead, K, k) weights: +1 on t, -1 on own (0 when t == own)
    weights = torch.nn.functional.one_hot(picks, k).to(x.dtype) \
        - torch.nn.functional.one_hot(own, k).to(x.dtype).unsqueeze(-2)
    pairs = weights @ units.unsqueeze(-3) if units.dim() > 2 else weights @ units  # (*lead, K, D)
    pairs = pairs / pairs.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return pairs.reshape(*x.shape[:-feature_ndim], K, *x.shape[-feature_ndim:])


def start_directions(x: Tensor, y: Tensor, *, feature_ndim: int, direction: Tensor | None = None,
                     clusters: Tensor | None = None,
                     cluster_labels: Tensor | None = None,
                     cluster_pairs: int | None = 0) -> Tensor | None:
    """(*lead, K, *F) the start directions the data allows for these points (None if none).

    Binary labels (float +-1): the data direction, the class-mean difference and, with
    clusters, the opposite-cluster direction and the `cluster_pairs` nearest cluster pairs
    (None: all of them). Class labels: the data's per-class directions (C, *F) if given
    (-u_y), else None."""
    from advcore.attacks.direction import direction_delta

    n_batch = y.dim() - 1
    feat = tuple(x.shape[-feature_ndim:])
    out = []
    if direction is not None:
        binary_dir = tuple(direction.shape) in (feat, tuple(x.shape[:n_batch]) + feat)
        if y.is_floating_point() or not binary_dir:  # class labels need per-class directions
            out.append(direction_delta(x, y, 1.0, direction, norm="l2", feature_ndim=feature_ndim))
    if y.is_floating_point():
        out.append(class_mean_direction(x, y, feature_ndim))
        if clusters is not None and cluster_labels is not None:
            out.append(opposite_cluster_direction(x, y, clusters, cluster_labels, feature_ndim))
    out = [o.unsqueeze(n_batch + 1) for o in out]
    if y.is_floating_point() and clusters is not None and cluster_labels is not None \
            and cluster_pairs != 0:
        out.append(cluster_pair_directions(x, y, clusters, cluster_labels, feature_ndim,
                                           cluster_pairs))
    if not out:
        return None
    return torch.cat(out, dim=n_batch + 1)  # (*B, N, K, *F)

"""Measurements of the mechanism: where the first-layer weights point, relative to the features.

- cosine matrices cos(w_r, f_j): neurons x features, one per seed (`cosine/{feature set}`);
- `corr/cluster/j` = max_r cos(w_r, mu_j) (multi_cluster, images: centred class means);
- `corr/robust/i`, `corr/non_robust/i` = max over class i's neurons of <w_{i,r}, f_i>/||f_i||
  (the normalised correlation of science.md §B: a projection, not a cosine);
- `weights/norm_mean`, `weights/norm_max` over first-layer rows;
- `cliff_radius`: where a robust-accuracy curve falls to 10%.
All functions take batched tensors with a leading seed dim S.
"""

from __future__ import annotations

import torch

from advcore.observe import MatrixRecord, MetricRecord

CORRELATION_SETS = ("cluster", "robust", "non_robust")
_COLUMN_PREFIX = {"cluster": "mu", "robust": "u", "non_robust": "v"}


def cosine_matrix(weights: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
    """weights (S, R, D), features (S, k, *F) with prod(F) = D -> (S, R, k) cosines."""
    feats = features.flatten(2)  # (S, k, D)
    w = weights / weights.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    f = feats / feats.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return torch.einsum("srd,skd->srk", w, f)


def class_correlations(weights: torch.Tensor, features: torch.Tensor,
                       neuron_classes: torch.Tensor | None) -> torch.Tensor:
    """(S, k): max over class i's neurons (all neurons if None) of <w, f_i>/||f_i||."""
    feats = features.flatten(2)
    unit = feats / feats.norm(dim=-1, keepdim=True).clamp_min(1e-12)  # (S, k, D)
    proj = torch.einsum("srd,skd->srk", weights, unit)  # (S, R, k)
    if neuron_classes is not None:
        own = neuron_classes.to(proj.device)[:, None] == torch.arange(proj.shape[-1], device=proj.device)
        proj = proj.masked_fill(~own, float("-inf"))  # (R, k) mask: neuron r feeds class i
    return proj.amax(dim=1)


def _matches(weights: torch.Tensor, features: torch.Tensor) -> bool:
    return features.flatten(2).shape[-1] == weights.shape[-1]


@torch.no_grad()
def correlation_records(model, features: dict[str, torch.Tensor], step: int, seeds: list[int]
                        ) -> tuple[list[MetricRecord], list[MatrixRecord], dict[str, torch.Tensor]]:
    """corr/* metrics and cosine/* matrices for every feature set living in input space.
    Also returns the raw per-seed tensors (for the summary): {"cosine/cluster": (S, R, k), ...}."""
    weights = model.first_layer().detach().float()  # (S, R, D)
    rows = model.neuron_labels() if hasattr(model, "neuron_labels") else []
    classes = model.neuron_classes() if hasattr(model, "neuron_classes") else None
    metrics, matrices, raw = [], [], {}
    for name in CORRELATION_SETS:
        if name not in features or not _matches(weights, features[name]):
            continue
        cos = cosine_matrix(weights, features[name])  # (S, R, k)
        if name == "cluster":
            corr = cos.amax(dim=1)  # (S, k)
        elif hasattr(model, "class_correlations"):  # a learner that knows its class structure
            corr = model.class_correlations(features[name]).detach().float()
        else:
            corr = class_correlations(weights, features[name], classes)
        raw[f"cosine/{name}"], raw[f"corr/{name}"] = cos, corr
        cols = [f"{_COLUMN_PREFIX[name]}_{j}" for j in range(cos.shape[-1])]
        cos_list, corr_list = cos.cpu().tolist(), corr.cpu().tolist()
        for s, seed in enumerate(seeds):
            metrics += [MetricRecord(f"corr/{name}/{j}", step, v, seed) for j, v in enumerate(corr_list[s])]
            matrices.append(MatrixRecord(f"cosine/{name}", step, seed, cos_list[s], list(rows), cols))
    return metrics, matrices, raw


@torch.no_grad()
def weight_norm_records(model, step: int, seeds: list[int]) -> list[MetricRecord]:
    norms = model.first_layer().detach().float().norm(dim=-1)  # (S, R)
    mean, top = norms.mean(1).tolist(), norms.amax(1).tolist()
    return [r for s, seed in enumerate(seeds) for r in (
        MetricRecord("weights/norm_mean", step, mean[s], seed),
        MetricRecord("weights/norm_max", step, top[s], seed))]


def cliff_radius(radii: list[float], accuracy: list[float], level: float = 0.1) -> float | None:
    """The radius where a robust-accuracy curve first falls to `level` (linear interpolation
    between the grid's radii, taken in increasing order): the "10% cliff" of the
    feature-averaging figures. None if it never falls that low; the smallest radius if it
    starts there."""
    points = sorted(zip(radii, accuracy))
    prev_r, prev_a = points[0]
    if prev_a <= level + 1e-6:  # accuracies are float32 fractions (3/30 > 0.1)
        return float(prev_r)
    for r, a in points[1:]:
        if a <= level + 1e-6:
            return float(prev_r + (prev_a - level) / (prev_a - a) * (r - prev_r))
        prev_r, prev_a = r, a
    return None

"""Feature decoupling on real data (science.md §A, real-data version): 2- vs 10-class training.

The synthetic signature is the neuron x cluster cosine matrix: binary training averages a
neuron over its label's clusters (max cosine ~ 1/sqrt(k/2)), fine labels decouple it (~ 1). On
images the clusters are classes, and three views of the same question are measured:

- `first_layer`: cos(w_r, centred class mean) for first-layer weight vectors in input space
  (for a one-hidden-layer MLP these ARE the penultimate neurons);
- `selectivity`: each penultimate neuron's mean activation per class, a non-negative profile
  p_r (k,); its cosine with the class indicator e_j is p_r[j] / ||p_r||: 1 for a neuron that
  fires on one class only, 1/sqrt(k/2) for one that fires equally on half the classes;
- `class_weights`: cos(W_i, m_j) between the read-out's class weight vectors and the centred
  class means of the penultimate representation (multi-output heads only).

`mean_max_cosine` (mean over rows of the row's max) condenses a matrix into one "diagonality"
number. Everything is batched over the leading seed dim S.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from advcore.measure import cosine_matrix
from advcore.observe import MatrixRecord, MetricRecord


def class_means(z: torch.Tensor, y: torch.Tensor, k: int, centred: bool = True) -> torch.Tensor:
    """z (S, N, D), class indices y (S, N) -> (S, k, D) class means (minus the overall mean)."""
    onehot = F.one_hot(y, k).to(z.dtype)  # (S, N, k)
    counts = onehot.sum(1).clamp_min(1)  # (S, k)
    means = torch.einsum("snk,snd->skd", onehot, z) / counts[..., None]
    return means - z.mean(1, keepdim=True) if centred else means


def mean_max_cosine(cos: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """(S, R, k) cosines -> (S,) mean over rows r of max_j cos[r, j]; `valid` (S, R) masks rows
    (dead neurons have no direction)."""
    best = cos.amax(-1)  # (S, R)
    if valid is None:
        return best.mean(-1)
    valid = valid.to(best.dtype)
    return (best * valid).sum(-1) / valid.sum(-1).clamp_min(1)


def class_selectivity(z: torch.Tensor, y: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Penultimate activations z (S, N, H) >= 0 -> ((S, H, k) cos(p_r, e_j), (S, H) alive mask)."""
    profile = class_means(z, y, k, centred=False).transpose(1, 2)  # (S, H, k)
    norm = profile.norm(dim=-1, keepdim=True)
    alive = norm.squeeze(-1) > 1e-8
    return profile / norm.clamp_min(1e-12), alive


def representation(model, x: torch.Tensor) -> torch.Tensor:
    """The penultimate layer G(x) (S, N, H) of a learner that exposes it."""
    if not hasattr(model, "representation"):
        raise ValueError(f"learner {type(model).__name__} exposes no penultimate representation")
    return model.representation(x)


@torch.no_grad()
def decoupling(model, x: torch.Tensor, y_fine: torch.Tensor, k: int) -> dict[str, torch.Tensor]:
    """All three views for inputs x (S, N, *F) with class labels y_fine (S, N).

    Returns {"first_layer": (S, R, k) or absent, "selectivity": (S, H, k), "alive": (S, H),
    "class_weights": (S, C, k) or absent, and the (S,) mean-max-cosine of each as
    "<view>/mean_max_cosine"}."""
    out: dict[str, torch.Tensor] = {}
    weights = model.first_layer().detach().float()  # (S, R, D)
    if weights.shape[-1] == x[0, 0].numel():  # first-layer vectors live in input space
        out["first_layer"] = cosine_matrix(weights, class_means(x.flatten(2).float(), y_fine, k))
        out["first_layer/mean_max_cosine"] = mean_max_cosine(out["first_layer"])
    if hasattr(model, "representation"):
        z = representation(model, x).float()  # (S, N, H)
        out["selectivity"], out["alive"] = class_selectivity(z, y_fine, k)
        out["selectivity/mean_max_cosine"] = mean_max_cosine(out["selectivity"], out["alive"])
        if hasattr(model, "readout_weights") and model.n_outputs > 1:
            w = model.readout_weights().detach().float()  # (S, C, H)
            out["class_weights"] = cosine_matrix(w, class_means(z, y_fine, k))
            out["class_weights/mean_max_cosine"] = mean_max_cosine(out["class_weights"])
    return out


def decoupling_records(model, x, y_fine, k: int, step: int, seeds: list[int]
                       ) -> tuple[list[MetricRecord], list[MatrixRecord], dict[str, torch.Tensor]]:
    """`decoupling/{view}_max_cosine` metrics and `decoupling/{view}` matrices (rows: neurons or
    class vectors, columns: classes) for the evaluator; also the raw tensors."""
    views = decoupling(model, x, y_fine, k)
    metrics, matrices = [], []
    cols = [f"class_{j}" for j in range(k)]
    for view in ("first_layer", "selectivity", "class_weights"):
        if view not in views:
            continue
        score, mats = views[f"{view}/mean_max_cosine"].tolist(), views[view].cpu().tolist()
        for s, seed in enumerate(seeds):
            metrics.append(MetricRecord(f"decoupling/{view}_max_cosine", step, score[s], seed))
            rows = [str(r) for r in range(len(mats[s]))]
            matrices.append(MatrixRecord(f"decoupling/{view}", step, seed, mats[s], rows, cols))
    return metrics, matrices, views

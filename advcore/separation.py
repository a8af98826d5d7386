"""Data-separation tables (science.md §C; Yang et al.'s table in the seed): is real data
separated enough that a robust classifier exists at radius eps?

- train-train: min ||x_i - x_j|| over training pairs with DIFFERENT labels (half of it bounds the
  radius any classifier can be robust at on the training set);
- test-train: for every test point the distance to the nearest differently labelled training
  point; the table reports the minimum (and the distribution's quantiles).

Exact and batched on the data's device, in float64: l2 via torch.cdist's matrix-product form
(it loses ~1e-4 relative accuracy in float32, not in float64), l_inf via torch.cdist(p=inf)
(a direct max-abs kernel, ~7x faster than a broadcast (rows, cols, D) max-abs on CPU). Work
is chunked over rows (and columns) so memory stays bounded; no Python loop touches samples.
"""

from __future__ import annotations

import torch

# distance-matrix entries per chunk (rows x cols): 16M float64 ~ 128 MB
MAX_CHUNK_ELEMENTS = 2**24


def _pairwise_chunk(a: torch.Tensor, b: torch.Tensor, norm: str) -> torch.Tensor:
    """a (n, D), b (m, D) -> (n, m) exact distances (float64)."""
    if norm == "l2":
        return torch.cdist(a, b, compute_mode="use_mm_for_euclid_dist").clamp_min(0)
    return torch.cdist(a, b, p=float("inf"))


def nearest_other_label(queries: torch.Tensor, q_labels: torch.Tensor, refs: torch.Tensor,
                        r_labels: torch.Tensor, norm: str) -> tuple[torch.Tensor, torch.Tensor]:
    """For each query (n, *F) the distance to the nearest reference (m, *F) with a different
    label, and that reference's index: ((n,) float64, (n,) long). Queries may be the references
    themselves (a point never pairs with itself: its label is its own)."""
    if norm not in ("l2", "linf"):
        raise ValueError(f"norm must be 'l2' or 'linf', got {norm!r}")
    q, r = queries.flatten(1).double(), refs.flatten(1).double()  # (n, D), (m, D)
    n, m = q.shape[0], r.shape[0]
    rows = max(1, MAX_CHUNK_ELEMENTS // max(m, 1))
    cols = min(m, MAX_CHUNK_ELEMENTS)
    best = torch.full((n,), float("inf"), dtype=torch.float64, device=q.device)
    arg = torch.full((n,), -1, dtype=torch.long, device=q.device)
    for i in range(0, n, rows):
        qi, li = q[i:i + rows], q_labels[i:i + rows]
        for j in range(0, m, cols):
            dist = _pairwise_chunk(qi, r[j:j + cols], norm)  # (rows, cols)
            same = li[:, None] == r_labels[None, j:j + cols]
            dist = dist.masked_fill(same, float("inf"))
            value, index = dist.min(1)
            better = value < best[i:i + rows]
            best[i:i + rows] = torch.where(better, value, best[i:i + rows])
            arg[i:i + rows] = torch.where(better, index + j, arg[i:i + rows])
    return best, arg


def separation(x_train: torch.Tensor, y_train: torch.Tensor, x_test: torch.Tensor,
               y_test: torch.Tensor, norm: str) -> dict[str, float]:
    """One data set's row of the table in one norm (unbatched tensors: (N, *F), (N,))."""
    train_train, _ = nearest_other_label(x_train, y_train, x_train, y_train, norm)
    test_train, _ = nearest_other_label(x_test, y_test, x_train, y_train, norm)
    q = torch.tensor([0.01, 0.1, 0.5], dtype=torch.float64, device=test_train.device)
    q01, q10, q50 = torch.quantile(test_train, q).tolist()
    return {"train_train_min": float(train_train.min()), "test_train_min": float(test_train.min()),
            "test_train_q01": q01, "test_train_q10": q10, "test_train_median": q50}


def separation_table(data, norms: list[str], labels: str = "fine") -> list[dict]:
    """Rows {"seed_index", "norm", train_train_min, test_train_min, quantiles} for a stacked
    Dataset (leading seed dim S). `labels`: "fine" uses class labels when present (the seed's
    table is over the 10 classes), "main" the task's labels (binary ±1 or classes).
    Seeds only differ when the data is subsampled; each is computed (one call per seed)."""
    use_fine = labels == "fine" and data.y_train_fine is not None
    y_tr = data.y_train_fine if use_fine else data.y_train
    y_te = data.y_test_fine if use_fine else data.y_test
    rows = []
    for s in range(data.x_train.shape[0]):
        for norm in norms:
            row = separation(data.x_train[s], y_tr[s], data.x_test[s], y_te[s], norm)
            rows.append({"seed_index": s, "norm": norm, **row})
    return rows


def separation_cost(spec, data) -> "Ledger":
    """advcore.cost.Ledger of `separation_table`: per seed and norm, the train-train and
    test-train distance matrices (2 n m D operations each, the matrix product's count for l2
    and subtract + max-abs for l_inf), computed in float64 chunks of MAX_CHUNK_ELEMENTS."""
    from advcore.cost import Factor, Ledger, metric_bytes, persistent_terms, seeds_factor, term

    S, norms = len(spec.seed_list), len(spec.study.norms)
    n, m, D = data.n_train, data.n_test, data.in_elements
    factors = (data.samples("train"), data.samples("test"), seeds_factor(spec),
               Factor(("study", "norms"), norms, 2), *data.size)
    ledger = Ledger()
    ledger.flops.append(term("separation", S * norms * 2.0 * (n * n + m * n) * D, factors))
    rows = max(1, MAX_CHUNK_ELEMENTS // max(n, 1))
    chunk = min(rows, max(n, m)) * min(n, MAX_CHUNK_ELEMENTS)  # distance entries at once
    # float64 copies of queries and references (and the matrix product's padded copies), the
    # chunk's distances, label mask and masked copy
    working = 2 * (n + m) * D * 8 + chunk * (8 + 1 + 8 + 8)
    ledger.phase("separation", persistent_terms(spec, data), term("separation", working, factors))
    ledger.stored.append(term("metrics", metric_bytes(S * norms * 5, S * norms * 5), factors))
    return ledger

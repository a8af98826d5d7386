"""What the torch benchmarks share: their --json and --threads options, and a brief full-batch
fit of a model that is then attacked (eval mode, parameters frozen)."""

from __future__ import annotations

import argparse

import torch
from torch import nn


def parse_torch_args(parser: argparse.ArgumentParser) -> argparse.Namespace:
    """The command line with `--json PATH` and `--threads N` added; torch's thread count is set
    to N when given."""
    parser.add_argument("--json", metavar="PATH", help="also write the rows as JSON")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    return args


def fit_frozen(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, steps: int,
               lr: float) -> nn.Module:
    """`steps` full-batch Adam steps on the cross-entropy of (x, y); the model comes back in eval
    mode with its parameters frozen (attacks need gradients for the inputs only)."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model

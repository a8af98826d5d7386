"""What the torch benchmarks share: their --json and --threads options."""

from __future__ import annotations

import argparse

import torch


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


"""Optional `torch.compile` of a learner's forward pass: the PGD step, the evaluation passes and
the training step all go through it.

Opt-in (ADVLAB_COMPILE=1, read by advcore.device.compile_requested), because it pays only where
measured: compilation costs seconds to minutes per shape family, and on CPU the two-layer and
MLP learners are a few large matmuls that eager PyTorch already runs near the matmul peak
(benchmarks/compile_bench.py prints eager vs compiled step times and the compile time).
Shapes are marked dynamic: the evaluation's early exit shrinks the batch from step to step.
"""

from __future__ import annotations

import torch


def compile_forward(model: torch.nn.Module) -> torch.nn.Module:
    """`model` with its forward compiled in place (parameters, buffers and methods unchanged)."""
    model.forward = torch.compile(model.forward, dynamic=True)
    return model

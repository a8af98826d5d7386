"""ResNet-18-style network (He et al. 2016, CIFAR variant: 3x3 stem, no max-pool) for GPU runs.

Batched seeds: like `cnn`, the S seeds' channels sit side by side and every convolution is a
grouped convolution with groups=S, so one kernel call serves all seeds and no seed sees
another's channels. BatchNorm over the S*C channels of that layout normalises each seed's
channels with that seed's own batch statistics (running stats are per seed too), so S batched
seeds equal S separate runs. (torch.func.vmap over functional_call was the alternative; it
does not support BatchNorm's in-place running-stat updates without extra plumbing.)

Layout: stem conv3x3(width) -> stages of BasicBlocks (`blocks` per stage, widths width * 2^i,
stride 2 from the second stage on) -> global average pool (the representation G(x), the
penultimate layer) -> linear read-out. Tiny `width`/`blocks` make it CPU-testable.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from advcore.cost import FLOAT, Factor, ModelCost
from advcore.learners.base import BatchedModel, seeded_normal


class SeedConv(nn.Module):
    """(L, S*C_in, H, W) -> (L, S*C_out, H', W'): one conv per seed as a grouped conv."""

    def __init__(self, seeds: list[int], c_in: int, c_out: int, size: int, stride: int, name: str):
        super().__init__()
        std = math.sqrt(2.0 / (c_in * size * size))  # He init
        self.weight = nn.Parameter(seeded_normal(seeds, (c_out, c_in, size, size), std, f"init/{name}"))
        self.stride, self.padding, self.groups = stride, size // 2, len(seeds)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return F.conv2d(h, self.weight.flatten(0, 1), stride=self.stride, padding=self.padding,
                        groups=self.groups)


class SeedBatchNorm(nn.Module):
    """BatchNorm2d over the (S*C) channel layout; parameters and running stats are (S, C)."""

    def __init__(self, n_seeds: int, channels: int, enabled: bool = True):
        super().__init__()
        self.enabled = enabled
        self.weight = nn.Parameter(torch.ones(n_seeds, channels))
        self.bias = nn.Parameter(torch.zeros(n_seeds, channels))
        self.register_buffer("running_mean", torch.zeros(n_seeds, channels))
        self.register_buffer("running_var", torch.ones(n_seeds, channels))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if not self.enabled:  # affine only: a plain ResNet without normalisation
            return h * self.weight.reshape(1, -1, 1, 1) + self.bias.reshape(1, -1, 1, 1)
        # views share storage, so batch_norm's in-place running-stat update lands in the buffers
        return F.batch_norm(h, self.running_mean.view(-1), self.running_var.view(-1),
                            self.weight.flatten(), self.bias.flatten(), self.training, 0.1, 1e-5)


class BasicBlock(nn.Module):
    def __init__(self, seeds, c_in: int, c_out: int, stride: int, name: str, batch_norm: bool):
        super().__init__()
        S = len(seeds)
        self.conv1 = SeedConv(seeds, c_in, c_out, 3, stride, f"{name}/conv1")
        self.bn1 = SeedBatchNorm(S, c_out, batch_norm)
        self.conv2 = SeedConv(seeds, c_out, c_out, 3, 1, f"{name}/conv2")
        self.bn2 = SeedBatchNorm(S, c_out, batch_norm)
        self.shortcut = None
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(SeedConv(seeds, c_in, c_out, 1, stride, f"{name}/short"),
                                          SeedBatchNorm(S, c_out, batch_norm))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(h)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + (h if self.shortcut is None else self.shortcut(h)))


class ResNet18(BatchedModel):
    def __init__(self, spec, in_shape, n_outputs: int, seeds: list[int]) -> None:
        super().__init__(in_shape, n_outputs, seeds)
        if len(self.in_shape) != 3:
            raise ValueError(f"learner 'resnet18' needs image inputs (C, H, W), got {self.in_shape}")
        S, c = self.n_seeds, self.in_shape[0]
        self.stem = SeedConv(seeds, c, spec.width, 3, 1, "stem")
        self.stem_bn = SeedBatchNorm(S, spec.width, spec.batch_norm)
        blocks, c_in = [], spec.width
        for stage, n_blocks in enumerate(spec.blocks):
            c_out = spec.width * 2 ** stage
            for b in range(n_blocks):
                stride = 2 if stage > 0 and b == 0 else 1
                blocks.append(BasicBlock(seeds, c_in, c_out, stride, f"s{stage}b{b}", spec.batch_norm))
                c_in = c_out
        self.blocks = nn.Sequential(*blocks)
        self.features_dim = c_in
        self.fc = nn.Parameter(seeded_normal(seeds, (n_outputs, c_in), 1 / math.sqrt(c_in), "init/fc"))
        self.fc_bias = nn.Parameter(torch.zeros(S, n_outputs))

    @classmethod
    def cost(cls, spec, in_shape, n_outputs: int) -> ModelCost:
        """Stem and BasicBlocks as laid out in __init__. Backward keeps each convolution's
        output (BatchNorm's input) and the ReLU output after it: 2 per conv output element;
        a no-grad pass holds a block's input and ~3 of its outputs at once."""
        c, h, w = in_shape

        def conv(c_in, c_out, size, stride, h, w):  # -> (flops, params with BatchNorm, h', w')
            pad = size // 2
            h2, w2 = (h + 2 * pad - size) // stride + 1, (w + 2 * pad - size) // stride + 1
            weights = c_out * c_in * size * size
            return 2.0 * weights * h2 * w2, weights + 4 * c_out, h2, w2

        flops, params, h, w = conv(c, spec.width, 3, 1, h, w)
        stem = spec.width * h * w
        first, saved, widest = flops, float(c * h * w + 2 * stem), 4.0 * stem
        c_in = spec.width
        for stage, n_blocks in enumerate(spec.blocks):
            c_out = spec.width * 2 ** stage
            for b in range(n_blocks):
                stride = 2 if stage > 0 and b == 0 else 1
                f1, p1, h2, w2 = conv(c_in, c_out, 3, stride, h, w)
                f2, p2, _, _ = conv(c_out, c_out, 3, 1, h2, w2)
                flops, params = flops + f1 + f2, params + p1 + p2
                convs = 2
                if stride != 1 or c_in != c_out:
                    f3, p3, _, _ = conv(c_in, c_out, 1, stride, h, w)
                    flops, params, convs = flops + f3, params + p3, 3
                e = c_out * h2 * w2
                saved += 2 * convs * e
                widest = max(widest, c_in * h * w + 3 * e)
                c_in, h, w = c_out, h2, w2
        fc = 2.0 * c_in * n_outputs
        return ModelCost(
            params=params + c_in * n_outputs + n_outputs, forward=flops + fc, first=first,
            representation=flops, rep_dim=c_in, backward_bytes=saved * FLOAT,
            eval_bytes=(widest + math.prod(in_shape)) * FLOAT, n_neurons=spec.width,
            first_dim=in_shape[0] * 9, grad_copy=c_in * n_outputs,
            factors=(Factor(("learner", "width"), spec.width, 64),
                     Factor(("learner", "blocks"), sum(spec.blocks), 8)))

    def representation(self, x: torch.Tensor) -> torch.Tensor:
        """x (S, L, C, H, W) -> (S, L, features_dim): globally pooled last-stage features."""
        S, L = x.shape[:2]
        h = x.transpose(0, 1).reshape(L, S * x.shape[2], *x.shape[3:])  # (L, S*C, H, W)
        h = F.relu(self.stem_bn(self.stem(h)))
        h = self.blocks(h)  # (L, S*C_last, H', W')
        return h.mean((-2, -1)).reshape(L, S, -1).transpose(0, 1)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return torch.einsum("slh,soh->slo", self.representation(x), self.fc) + self.fc_bias[:, None]

    def readout_weights(self) -> torch.Tensor:
        return self.fc  # (S, C, features_dim)

    def first_layer(self) -> torch.Tensor:
        return self.stem.weight.flatten(2)  # (S, width, C*3*3): stem filters

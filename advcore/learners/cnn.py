"""A small conv net for images, batched over seeds with grouped convolutions.

conv3x3 -> ReLU -> maxpool2 per entry of `channels`, then a hidden linear layer and the read-out.
The S seeds' filters sit side by side as groups, so one conv call serves all seeds.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from advcore.cost import FLOAT, Factor, ModelCost
from advcore.learners.base import BatchedModel, seeded_normal


class CNN(BatchedModel):
    def __init__(self, spec, in_shape, n_outputs: int, seeds: list[int]) -> None:
        super().__init__(in_shape, n_outputs, seeds)
        if len(self.in_shape) != 3:
            raise ValueError(f"learner 'cnn' needs image inputs (C, H, W), got {self.in_shape}")
        c, h, w = self.in_shape
        self.convs = nn.ParameterList()
        self.conv_biases = nn.ParameterList()
        for i, out_c in enumerate(spec.channels):
            std = math.sqrt(2.0 / (c * 9))
            self.convs.append(nn.Parameter(seeded_normal(seeds, (out_c, c, 3, 3), std, f"init/conv{i}")))
            self.conv_biases.append(nn.Parameter(torch.zeros(self.n_seeds, out_c)))
            c, h, w = out_c, max(h // 2, 1), max(w // 2, 1)
        flat = c * h * w
        self.hidden = nn.Parameter(seeded_normal(seeds, (spec.hidden, flat), math.sqrt(2.0 / flat), "init/hidden"))
        self.hidden_bias = nn.Parameter(torch.zeros(self.n_seeds, spec.hidden))
        self.out = nn.Parameter(seeded_normal(seeds, (n_outputs, spec.hidden), 1 / math.sqrt(spec.hidden), "init/out"))
        self.out_bias = nn.Parameter(torch.zeros(self.n_seeds, n_outputs))

    @classmethod
    def cost(cls, spec, in_shape, n_outputs: int) -> ModelCost:
        """conv3x3 (same size) -> ReLU -> maxpool2 per stage; backward keeps each stage's
        conv and ReLU outputs and the pooled output."""
        c, h, w = in_shape
        convs, params, saved, widest = [], 0, float(c * h * w), 0.0
        for out_c in spec.channels:
            convs.append(2.0 * out_c * c * 9 * h * w)
            params += out_c * c * 9 + out_c
            e = out_c * h * w
            saved += 2 * e + e / 4
            widest = max(widest, c * h * w + 2 * e)
            c, h, w = out_c, max(h // 2, 1), max(w // 2, 1)
        flat = c * h * w
        head = 2.0 * flat * spec.hidden
        out = 2.0 * spec.hidden * n_outputs
        params += flat * spec.hidden + spec.hidden + spec.hidden * n_outputs + n_outputs
        return ModelCost(
            params=params, forward=sum(convs) + head + out, first=convs[0],
            representation=sum(convs) + head, rep_dim=spec.hidden,
            backward_bytes=(saved + 3 * spec.hidden) * FLOAT, eval_bytes=widest * FLOAT,
            n_neurons=spec.channels[0], first_dim=in_shape[0] * 9,
            grad_copy=max(flat * spec.hidden, spec.hidden * n_outputs),
            factors=(Factor(("learner", "channels"), max(spec.channels), 128),
                     Factor(("learner", "channels"), len(spec.channels), 4),
                     Factor(("learner", "hidden"), spec.hidden, 512)))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        h = self.representation(x)
        return torch.einsum("slh,soh->slo", h, self.out) + self.out_bias[:, None]

    def readout_weights(self) -> torch.Tensor:
        return self.out  # (S, C, hidden) class weight vectors

    def representation(self, x: torch.Tensor) -> torch.Tensor:
        """x (S, L, C, H, W) -> (S, L, hidden): the penultimate layer."""
        S, L = x.shape[:2]
        h = x.transpose(0, 1).reshape(L, S * x.shape[2], *x.shape[3:])  # (L, S*C, H, W)
        for weight, bias in zip(self.convs, self.conv_biases):
            h = F.conv2d(h, weight.flatten(0, 1), bias.flatten(), padding=1, groups=S)
            h = F.relu(h)
            if min(h.shape[-2:]) >= 2:
                h = F.max_pool2d(h, 2)
        h = h.reshape(L, S, -1).transpose(0, 1)  # (S, L, flat)
        return F.relu(torch.einsum("slf,shf->slh", h, self.hidden) + self.hidden_bias[:, None])

    def first_layer(self) -> torch.Tensor:
        return self.convs[0].flatten(2)  # (S, channels[0], C*3*3): filters, not input-space vectors

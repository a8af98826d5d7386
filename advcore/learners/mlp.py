"""A fully connected ReLU network with per-seed weights (S, out, in): batched seeds in one einsum.

He-normal hidden layers (std sqrt(2/in)), a 1/sqrt(in) read-out, zero biases; all times init_scale.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from advcore.cost import FLOAT, Factor, ModelCost
from advcore.learners.base import BatchedModel, seeded_normal


class MLP(BatchedModel):
    def __init__(self, spec, in_shape, n_outputs: int, seeds: list[int]) -> None:
        super().__init__(in_shape, n_outputs, seeds)
        sizes = [self.in_features, *spec.widths, n_outputs]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            gain = 1.0 if i == len(sizes) - 2 else 2.0
            std = spec.init_scale * math.sqrt(gain / fan_in)
            self.weights.append(nn.Parameter(seeded_normal(seeds, (fan_out, fan_in), std, f"init/w{i}")))
            self.biases.append(nn.Parameter(torch.zeros(self.n_seeds, fan_out)))

    @classmethod
    def cost(cls, spec, in_shape, n_outputs: int) -> ModelCost:
        """One matrix product per layer. Backward keeps every ReLU output, and at the widest
        layer its output's and pre-activation's gradients besides."""
        D = math.prod(in_shape)
        sizes = [D, *spec.widths, n_outputs]
        layers = [2.0 * a * b for a, b in zip(sizes[:-1], sizes[1:])]
        hidden = list(spec.widths)
        return ModelCost(
            params=sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:])), forward=sum(layers),
            first=layers[0], representation=sum(layers[:-1]), rep_dim=sizes[-2],
            backward_bytes=(sum(hidden) + 2 * max(hidden + [n_outputs])) * FLOAT,
            eval_bytes=2 * max(hidden + [n_outputs]) * FLOAT,
            n_neurons=sizes[1], first_dim=D,
            grad_copy=max(a * b for a, b in zip(sizes[:-1], sizes[1:])),
            factors=(Factor(("learner", "widths"), max(hidden, default=1), 1024),
                     Factor(("learner", "widths"), len(hidden), 4)))

    def representation(self, x: torch.Tensor) -> torch.Tensor:
        """x (S, L, *in_shape) -> (S, L, widths[-1]) last hidden activations (the penultimate
        layer: what feature reconstruction and decoupling measurements look at)."""
        h = x.reshape(x.shape[0], x.shape[1], -1)  # (S, L, D)
        for w, b in zip(self.weights[:-1], self.biases[:-1]):
            h = torch.relu(torch.einsum("sli,soi->slo", h, w) + b[:, None, :])
        return h

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        h = self.representation(x)
        return torch.einsum("sli,soi->slo", h, self.weights[-1]) + self.biases[-1][:, None, :]  # (S, L, C)

    def readout_weights(self) -> torch.Tensor:
        return self.weights[-1]  # (S, C, widths[-1]) class weight vectors

    def first_layer(self) -> torch.Tensor:
        return self.weights[0]  # (S, widths[0], D)

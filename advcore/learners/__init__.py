"""Learners: a registry keyed by `learner.kind`; every model is batched over seeds (base.py)."""

from __future__ import annotations

from typing import Callable

import torch

from advcore.learners.base import BatchedModel

LEARNERS: dict[str, Callable[..., BatchedModel]] = {}


def _load() -> None:
    from advcore.learners.cnn import CNN
    from advcore.learners.mlp import MLP
    from advcore.learners.patch_cnn import PatchCNN
    from advcore.learners.resnet import ResNet18
    from advcore.learners.two_layer import TwoLayerReLU

    LEARNERS.setdefault("two_layer_relu", TwoLayerReLU)
    LEARNERS.setdefault("mlp", MLP)
    LEARNERS.setdefault("cnn", CNN)
    LEARNERS.setdefault("resnet18", ResNet18)
    LEARNERS.setdefault("patch_cnn", PatchCNN)


def build_learner(spec, in_shape: tuple[int, ...], n_outputs: int, seeds: list[int],
                  device: torch.device | str = "cpu") -> BatchedModel:
    """The learner of a resolved ExperimentSpec, parameters (S, ...) on `device`."""
    _load()
    kind = spec.learner.kind
    if kind not in LEARNERS:
        raise NotImplementedError(f"no learner for kind {kind!r}")
    model = LEARNERS[kind](spec.learner, tuple(in_shape), n_outputs, list(seeds)).to(device)
    from advcore.device import compile_requested

    if compile_requested():  # opt-in: advcore.compiled says where it pays
        from advcore.compiled import compile_forward

        compile_forward(model)
    return model


__all__ = ["BatchedModel", "LEARNERS", "build_learner"]

"""Device choice in one place: the only reader of ADVLAB_DEVICE and ADVLAB_COMPILE inside advcore."""

from __future__ import annotations

import os

import torch

_CHOICES = ("auto", "cpu", "cuda")


def pick_device(requested: str | torch.device | None = None) -> torch.device:
    """`cpu` / `cuda` are honoured as asked; `auto` or None defers to ADVLAB_DEVICE, then picks
    cuda when available. Asking for cuda on a machine without it is an error, not a fallback,
    so a result never silently comes from another device than the one requested."""
    choice = str(requested or "auto").lower()
    if choice == "auto":
        choice = os.environ.get("ADVLAB_DEVICE", "auto").lower() or "auto"
    if choice not in _CHOICES and not choice.startswith("cuda:"):
        raise ValueError(f"unknown device {choice!r}; expected one of {_CHOICES}")
    if choice == "auto":
        choice = "cuda" if torch.cuda.is_available() else "cpu"
    if choice.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was requested but CUDA is not available")
    return torch.device(choice)


def derive_seed(seed: int, purpose: str) -> int:
    """A stable per-purpose seed (data, init, batches, attack) so that changing how one stream
    is consumed never shifts another; same on every platform (no Python hash())."""
    import hashlib

    digest = hashlib.sha256(f"{int(seed)}:{purpose}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 62) - 1)


def generator(seed: int, purpose: str) -> torch.Generator:
    """A CPU generator (CPU streams are identical on every machine; tensors move afterwards)."""
    return torch.Generator(device="cpu").manual_seed(derive_seed(seed, purpose))


def compile_requested() -> bool:
    """ADVLAB_COMPILE=1 (or true/yes) opts in to torch.compile of the learners (advcore.compiled)."""
    return os.environ.get("ADVLAB_COMPILE", "").strip().lower() in ("1", "true", "yes")

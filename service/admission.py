"""Admission from the estimate: a job is accepted only if advcore.cost prices it within the
configured limits of the queue it goes to; a sweep is accepted only if every member is, and if
its members together stay within the sweep limits.

Three quantities are limited: estimated peak memory (`max_peak_gb`), compute (`max_gflop`) and
stored bytes (`max_stored_gb`). Each queue (cpu, gpu) may set its own value (`cpu_max_gflop`,
`gpu_max_peak_gb`, ...); unset, the server-wide one applies. Over a limit is a 413 whose items
name the estimate, the limit, the queue and the JSON path of the field that dominates the
estimate (`OverEstimate`), so the user knows what to lower. Nothing is stored or enqueued before
admission passes.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

from advcore.cost import Cost, Term, estimate
from advcore.spec import ExperimentSpec
from lab.config import Settings
from service.errors import FieldError, OverEstimate, Refusal

log = logging.getLogger("advlab.api")

GB = 1e9
GIGA = 1e9

# quantity -> (setting suffix, unit to show, scale of one unit, words)
QUANTITIES: dict[str, tuple[str, str, float, str]] = {
    "peak_bytes": ("max_peak_gb", "GB", GB, "peak memory"),
    "flops": ("max_gflop", "GFLOP", GIGA, "compute"),
    "stored_bytes": ("max_stored_gb", "GB", GB, "stored data"),
}
SWEEP_QUANTITIES: dict[str, tuple[str, str, float, str]] = {
    "flops": ("max_sweep_gflop", "GFLOP", GIGA, "compute of all members"),
    "stored_bytes": ("max_sweep_stored_gb", "GB", GB, "stored data of all members"),
}


def queue_kind(queue: str, settings: Settings) -> str:
    """`gpu` for the GPU queue, else `cpu` (the queue of device auto/cpu jobs)."""
    return "gpu" if queue == settings.gpu_queue else "cpu"


@dataclass(frozen=True)
class Limits:
    """The limits one queue's jobs are admitted under, in bytes and FLOPs."""

    queue: str  # cpu | gpu
    peak_bytes: float
    flops: float
    stored_bytes: float
    settings_used: dict[str, str]  # quantity -> the setting that set it ("gpu_max_gflop")

    def of(self, quantity: str) -> float:
        return getattr(self, quantity)

    def as_dict(self) -> dict[str, float]:
        return {q: self.of(q) for q in QUANTITIES}


def limits_for(queue: str, settings: Settings) -> Limits:
    kind = queue_kind(queue, settings)
    values: dict[str, float] = {}
    used: dict[str, str] = {}
    for quantity, (name, _unit, scale, _words) in QUANTITIES.items():
        own = getattr(settings, f"{kind}_{name}")
        used[quantity] = f"{kind}_{name}" if own is not None else name
        values[quantity] = (own if own is not None else getattr(settings, name)) * scale
    return Limits(queue=kind, settings_used=used, **values)


def fmt(value: float, unit: str, scale: float) -> str:
    """9.03e9 bytes -> "9.03 GB"; 1.88e15 FLOPs -> "1,877,559 GFLOP"."""
    v = value / scale
    return f"{v:,.0f} {unit}" if v >= 1000 else f"{v:.3g} {unit}"


def dominant_field(cost: Cost, quantity: str) -> tuple[tuple, str | None]:
    """The JSON path (as a tuple and dotted) of the field that drives `quantity`."""
    top: Term | None = cost.dominant(quantity)
    factor = top.dominant if top is not None else None
    if factor is None:
        return (), None
    return tuple(factor.loc), factor.path


def refusals(cost: Cost, limits: Limits) -> list[Refusal]:
    """One Refusal per quantity over its limit (empty: admitted)."""
    out = []
    for quantity, (name, unit, scale, words) in QUANTITIES.items():
        value, limit = getattr(cost, quantity), limits.of(quantity)
        if value <= limit:
            continue
        loc, path = dominant_field(cost, quantity)
        setting = limits.settings_used[quantity]
        out.append(Refusal(
            quantity=quantity, limit_name=setting, estimate=value, maximum=limit,
            queue=limits.queue, loc=["body", *loc], path=path,
            msg=f"estimated {words} {fmt(value, unit, scale)} exceeds the limit {setting} = "
                f"{fmt(limit, unit, scale)} of the {limits.queue} queue (configurable: "
                f"ADVLAB_{setting.upper()})" + (f"; lower {path}" if path else "")))
    return out


@contextmanager
def _priceable() -> Iterator[None]:
    """A spec that cannot be resolved or priced (a combination the spec's validators let
    through) is a 422 rather than a 500: a spec that cannot be priced cannot be admitted."""
    try:
        yield
    except (ArithmeticError, IndexError, KeyError, NotImplementedError, TypeError,
            ValueError) as exc:
        log.exception("no estimate for a spec that passed validation")
        raise FieldError(["body"], f"this spec cannot be priced, so it cannot be admitted: "
                                   f"{type(exc).__name__}: {exc}", "value_error.estimate") from None


def resolve(spec: ExperimentSpec) -> ExperimentSpec:
    """spec.resolve(), failing as `price` does; price the result to resolve only once."""
    with _priceable():
        return spec.resolve()


def price(spec: ExperimentSpec) -> Cost:
    """advcore.cost.estimate (which resolves the spec unless resolve() made it), a failure
    answered as a 422."""
    with _priceable():
        return estimate(spec)


def admit(spec: ExperimentSpec, queue: str, settings: Settings) -> Cost:
    """The estimate of `spec`; raises OverEstimate (413) when it exceeds a limit of `queue`."""
    cost = price(spec)
    refused = refusals(cost, limits_for(queue, settings))
    if refused:
        raise OverEstimate(refused)
    return cost


def estimate_read(cost: Cost, limits: Limits) -> dict[str, Any]:
    """The estimate as the API shows it: totals, the path driving each, the terms and the
    limits of the queue it was admitted under."""
    body = cost.as_dict()
    body["gflop"] = cost.flops / GIGA
    body["queue"] = limits.queue
    body["limits"] = limits.as_dict()
    return body


def warm_up() -> None:
    """Price a default spec once: imports the cost functions (and torch, next to which they
    live), seconds on a busy machine, so the first submit does not pay for it."""
    estimate(ExperimentSpec())

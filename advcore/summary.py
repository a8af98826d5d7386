"""The run summary: the typed final result of one run, built once by advcore.run, stored as is
(its JSON form) by the service and read back by every reader through its methods.

Scalars only. Neuron x feature cosine matrices stay in the matrix series (the store's matrix
table, `matrices.jsonl` of a local run); the summary keeps per-feature correlations while a
feature set has at most MAX_LISTED_FEATURES features, and their mean / min / max always, so its
size never grows with d, k or the width.

Robust accuracy comes twice: each attack's own number (`robust_accuracy`, one entry per attack
and radius) and, per threat and radius, the robust accuracy against every attack run
(`robust_min`: a point counts as robust only if no attack broke it, AutoAttack's worst case per
point, so it is never above any attack's own number). When attacks at one radius disagree by
more than the spec's `evaluation.disagreement_gap`, `disagreements` says so: that is how gradient
masking shows (a masked model fools the gradient attacks, not the others).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_serializer

from advcore.spec import format_radius, robust_metric

SUMMARY_VERSION = 2
# attacks weaker by design (one step; one fixed direction): counted in the minimum; their
# numbers lying above it is listed, but is no reason for suspicion
WEAK_BY_DESIGN = ("fgsm", "feature_direction")
GAP_TOLERANCE = 1e-6  # accuracies are float32 means: a gap of exactly `gap` is no disagreement
MAX_LISTED_FEATURES = 64  # per-feature correlations listed up to this many features per set


class _Summary(BaseModel):
    # unknown keys of an older stored summary are ignored, never an error
    model_config = ConfigDict(extra="ignore")

    @model_serializer(mode="wrap")
    def _without_nulls(self, handler):
        """Absent, not null: what a run did not measure is left out of the JSON."""
        return {k: v for k, v in handler(self).items() if v is not None}


class Accuracy(_Summary):
    train: float | None = None
    test: float | None = None


class FineAccuracy(_Summary):
    """The k-class accuracies of a fine-label run whose main classifier is the binary read-out."""

    clean_accuracy: Accuracy = Field(default_factory=Accuracy)


class RobustAccuracy(_Summary):
    """One attack's own robust accuracy at one radius (fraction of the attacked test points)."""

    attack: str  # the attack's label, e.g. pgd_l2, autoattack_linf
    radius: float
    accuracy: float | None
    norm: Literal["l2", "linf"] | None = None  # None in summaries stored before version 2
    kind: str | None = None  # the attack's kind (fgsm, pgd, apgd, autoattack, ...)


class RobustMin(_Summary):
    """Robust accuracy against every attack of one threat at one radius: a point counts as
    robust only if no attack broke it. Never above any of `attacks`' own numbers."""

    threat: str  # e.g. min_l2, min_linf_per_patch (AttackSpec.threat_label)
    norm: Literal["l2", "linf"]
    radius: float
    accuracy: float | None
    attacks: list[str]  # the attacks combined
    lowest: str  # the attack with the lowest own number


class Disagreement(_Summary):
    """Attacks at one threat and radius whose own numbers lie more than `gap` above the lowest:
    their robustness is an artefact, as in the masking flags. `suspicious` when one of them is
    not weak by design (WEAK_BY_DESIGN): a stalled or masked gradient attack."""

    threat: str
    norm: Literal["l2", "linf"]
    radius: float
    gap: float  # the configured threshold (evaluation.disagreement_gap)
    lowest: str  # attack with the lowest own number
    lowest_accuracy: float
    above: dict[str, float]  # attack label -> its own number, each > lowest_accuracy + gap
    suspicious: bool = True
    reasons: list[str] = Field(default_factory=list)  # one per suspicious attack


class FeatureStats(_Summary):
    mean: float
    min: float
    max: float


class SeedSummary(_Summary):
    """What one seed's run measured (the run's top level holds these averaged over seeds)."""

    seed: int | None = None
    clean_accuracy: Accuracy = Field(default_factory=Accuracy)
    fine: FineAccuracy | None = None
    robust_accuracy: list[RobustAccuracy] = Field(default_factory=list)
    robust_min: list[RobustMin] = Field(default_factory=list)
    disagreements: list[Disagreement] = Field(default_factory=list)
    # per feature: {"cluster": [max_r cos(w_r, mu_j) for each j]} (patch: robust / non_robust),
    # listed while a set has at most MAX_LISTED_FEATURES features
    correlations: dict[str, list[float | None]] = Field(default_factory=dict)
    correlation_stats: dict[str, FeatureStats] = Field(default_factory=dict)
    decoupling: dict[str, float | None] | None = None

    # -------------------------------------------------------------- readers

    def metrics(self) -> dict[str, float]:
        """Final numbers under metric-style keys (the names of the metric series):
        `test/clean_accuracy`, `test/robust_accuracy/pgd_l2@4`, `test/robust_accuracy/min_l2@4`,
        `fine/test/clean_accuracy`, `corr/cluster/3`, `corr/cluster/mean`, `decoupling/...`."""
        out: dict[str, float] = {}

        def put(key: str, value: Any) -> None:
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                out[key] = float(value)

        for split in ("train", "test"):
            put(f"{split}/clean_accuracy", getattr(self.clean_accuracy, split))
        for item in self.robust_accuracy:
            put(robust_metric("test", item.attack, item.radius), item.accuracy)
        for item in self.robust_min:
            put(robust_metric("test", item.threat, item.radius), item.accuracy)
        if self.fine is not None:
            for split in ("train", "test"):
                put(f"fine/{split}/clean_accuracy", getattr(self.fine.clean_accuracy, split))
        for kind, values in self.correlations.items():
            for i, value in enumerate(values):
                put(f"corr/{kind}/{i}", value)
        for kind, stats in self.correlation_stats.items():
            for stat in ("mean", "min", "max"):
                put(f"corr/{kind}/{stat}", getattr(stats, stat))
        for key, value in (self.decoupling or {}).items():
            put(f"decoupling/{key}", value)
        return out

    def headline(self) -> tuple[str, float | None]:
        """(label, robust accuracy) the lists show: the minimum over all attacks of the first
        threat at its largest radius (older summaries: the first attack's)."""
        if self.robust_min:
            first = self.robust_min[0].threat
            worst = max((r for r in self.robust_min if r.threat == first), key=lambda r: r.radius)
            return f"{first}@{format_radius(worst.radius)}", worst.accuracy
        if self.robust_accuracy:
            first = self.robust_accuracy[0].attack
            worst = max((r for r in self.robust_accuracy if r.attack == first),
                        key=lambda r: r.radius)
            return f"{first}@{format_radius(worst.radius)}", worst.accuracy
        return "", None


class RunSummary(SeedSummary):
    """The summary of a run: every number is the mean over `seeds` when there are several."""

    version: int = SUMMARY_VERSION
    seeds: list[SeedSummary] | None = None  # one entry per seed of a batched run (>= 2 seeds)
    attack_flags: dict[str, dict[str, Any]] | None = None  # masking flags per attack label
    duration_s: float | None = None
    device: str | None = None
    threads: int | None = None  # torch intra-op threads the run used
    # studies (advcore.studies) instead of one training run: tables of scalars
    separation: dict[str, Any] | None = None
    feature_attacks: list[dict[str, Any]] | None = None
    models: dict[str, Any] | None = None

    @classmethod
    def from_stored(cls, stored: dict[str, Any] | None) -> "RunSummary | None":
        """A stored summary (any version) as a RunSummary; a version-1 `cosine_matrix` becomes
        the per-cluster maxima it stood for and is not kept."""
        if not stored:
            return None
        if isinstance(stored, RunSummary):
            return stored
        data = _upgrade(dict(stored))
        if isinstance(data.get("seeds"), list):
            data["seeds"] = [_upgrade(dict(s)) for s in data["seeds"] if isinstance(s, dict)]
        return cls.model_validate(data)

    def to_stored(self) -> dict[str, Any]:
        """The JSON form the store keeps and the API returns."""
        return self.model_dump(mode="json")

    def per_seed(self) -> list[SeedSummary]:
        """One summary per seed (a single-seed run is its own)."""
        return list(self.seeds) if self.seeds else [self]

    def suspicious(self) -> list[str]:
        """Human-readable reasons to distrust a robust number: disagreements between attacks
        and the attacks' own masking flags."""
        reasons = [reason for d in self.disagreements if d.suspicious for reason in d.reasons]
        for label, flags in (self.attack_flags or {}).items():
            if flags.get("suspicious"):
                reasons += [f"{label}: {r}" for r in flags.get("reasons") or []]
        return reasons

    def rows(self) -> list[tuple[str, Any]]:
        """(key, value) rows for display: the final metrics, then duration and device."""
        rows: list[tuple[str, Any]] = list(self.metrics().items())
        rows += [(f"disagreement/{d.threat}@{format_radius(d.radius)}", ", ".join(sorted(d.above)))
                 for d in self.disagreements]
        rows += [(key, getattr(self, key)) for key in ("duration_s", "device", "threads")
                 if getattr(self, key) is not None]
        return rows


def _upgrade(data: dict[str, Any]) -> dict[str, Any]:
    """Version 1 -> 2: the full cosine matrix leaves; its per-cluster maxima stay."""
    matrix = data.pop("cosine_matrix", None)
    if matrix and "cluster" not in (data.get("correlations") or {}) and all(
            isinstance(row, list) and row for row in matrix):
        maxima = [max((row[j] for row in matrix if isinstance(row[j], (int, float))),
                      default=None) for j in range(len(matrix[0]))]
        correlations = dict(data.get("correlations") or {})
        data["correlations"] = correlations
        values = [v for v in maxima if v is not None]
        if len(maxima) <= MAX_LISTED_FEATURES:
            correlations["cluster"] = maxima
        if values:
            stats = dict(data.get("correlation_stats") or {})
            stats.setdefault("cluster", {"mean": sum(values) / len(values), "min": min(values),
                                         "max": max(values)})
            data["correlation_stats"] = stats
    return data


# ----------------------------------------------------------------------------- building


def disagreements(own: list[RobustAccuracy], mins: list[RobustMin], gap: float
                  ) -> list[Disagreement]:
    """Per threat and radius of `mins`: the attacks whose own number exceeds the lowest own
    number by more than `gap` (none when all agree or one attack ran). Suspicious when one of
    them is not weak by design: a multi-step gradient attack beaten by that much is stalled or
    masked; fgsm or a fixed direction lagging is what they are."""
    by_label = {(r.attack, r.radius): r.accuracy for r in own}
    weak = {r.attack for r in own if r.kind in WEAK_BY_DESIGN}
    out = []
    for m in mins:
        numbers = {a: by_label.get((a, m.radius)) for a in m.attacks}
        numbers = {a: v for a, v in numbers.items() if v is not None}
        if len(numbers) < 2:
            continue
        lowest = min(numbers, key=numbers.get)
        floor = numbers[lowest]
        above = {a: v for a, v in numbers.items() if v - floor > gap + GAP_TOLERANCE}
        if not above:
            continue
        where = f"{m.norm} radius {format_radius(m.radius)}"
        reasons = [f"at {where}, {a} reports {v:.3f}, more than {gap:g} above {lowest} "
                   f"({floor:.3f}): it overstates robustness (a stalled or masked attack)"
                   for a, v in sorted(above.items()) if a not in weak]
        out.append(Disagreement(threat=m.threat, norm=m.norm, radius=m.radius, gap=gap,
                                lowest=lowest, lowest_accuracy=floor, above=above,
                                suspicious=bool(reasons), reasons=reasons))
    return out


def feature_summary(values: list[float]) -> tuple[list[float] | None, FeatureStats]:
    """(the list itself while short, mean/min/max) of one feature set's correlations."""
    stats = FeatureStats(mean=sum(values) / len(values), min=min(values), max=max(values))
    return (values if len(values) <= MAX_LISTED_FEATURES else None), stats


def seed_summary(final: dict[str, Any], s: int, gap: float) -> SeedSummary:
    """Seed s of an Evaluator's `final` (per-seed tensors of the last evaluation)."""
    own = [RobustAccuracy(attack=label, kind=kind, norm=norm, radius=radius,
                          accuracy=float(acc[s]))
           for label, kind, norm, radius, acc in final.get("robust", [])]
    numbers = {(r.attack, r.radius): r.accuracy for r in own}
    mins = [RobustMin(threat=threat, norm=norm, radius=radius, accuracy=float(acc[s]),
                      attacks=labels,
                      lowest=min(labels, key=lambda a: numbers.get((a, radius), 2.0)))
            for threat, norm, radius, acc, labels in final.get("robust_min", [])]
    out = SeedSummary(
        clean_accuracy=Accuracy(train=float(final["clean/train"][s]),
                                test=float(final["clean/test"][s])),
        robust_accuracy=own, robust_min=mins, disagreements=disagreements(own, mins, gap))
    raw = final.get("raw", {})
    for name in ("cluster", "robust", "non_robust"):
        if f"corr/{name}" in raw:
            listed, stats = feature_summary(raw[f"corr/{name}"][s].tolist())
            if listed is not None:
                out.correlations[name] = listed
            out.correlation_stats[name] = stats
    if "decoupling" in final:  # {"first_layer/mean_max_cosine": x, ...}
        out.decoupling = {k: float(v[s]) for k, v in final["decoupling"].items()}
    if "fine/train" in final:
        out.fine = FineAccuracy(clean_accuracy=Accuracy(train=float(final["fine/train"][s]),
                                                        test=float(final["fine/test"][s])))
    return out


def build_summary(final: dict[str, Any], seeds: list[int], gap: float) -> RunSummary:
    """The RunSummary of a run from its Evaluator's `final`: per seed, and with several seeds
    the mean over seeds on top (disagreements of the top level judged on the means)."""
    per_seed = [seed_summary(final, s, gap) for s in range(len(seeds))]
    if len(seeds) == 1:
        top = RunSummary(**per_seed[0].model_dump(exclude={"seed"}))
    else:
        top = RunSummary.model_validate(
            _mean([p.model_dump(exclude={"seed", "disagreements"}) for p in per_seed]))
        numbers = {(r.attack, r.radius): r.accuracy for r in top.robust_accuracy}
        for m in top.robust_min:
            m.lowest = min(m.attacks, key=lambda a: numbers.get((a, m.radius)) or 0.0)
        top.disagreements = disagreements(top.robust_accuracy, top.robust_min, gap)
        top.seeds = [p.model_copy(update={"seed": seed}) for seed, p in zip(seeds, per_seed)]
    if final.get("flags"):
        top.attack_flags = final["flags"]
    return top


def _mean(values: list):
    """Elementwise mean of equally shaped nested numbers / dicts / lists (None: no number)."""
    first = values[0]
    if isinstance(first, dict):
        return {k: _mean([v[k] for v in values]) for k in first}
    if isinstance(first, list):
        return [_mean([v[i] for v in values]) for i in range(len(first))]
    if isinstance(first, (int, float)) and not isinstance(first, bool):
        numbers = [v for v in values if v is not None]
        return sum(numbers) / len(numbers) if numbers else None
    return first

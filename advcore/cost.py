"""What a spec will cost before it runs: FLOPs, peak memory, stored bytes, evaluations.

`estimate(spec)` composes one cost function per kind, each next to the code it describes:
data builders (`advcore.data.<kind>.cost`, registered with `register_cost`), learners (the
`cost` classmethod of each learner class), attacks (`advcore.attacks.ATTACK_COSTS`), training
(`advcore.train.training_cost`), evaluation (`advcore.evaluate.evaluation_cost`) and studies
(`advcore.studies.STUDY_COSTS`). A new kind without its cost function fails
tests/advcore/test_cost.py.

Conventions (so an estimate can be checked against measurement):
- FLOPs count matrix products and convolutions as 2 * multiply-adds, as
  torch.utils.flop_counter.FlopCounterMode does; elementwise work is not counted. A training
  step costs forward + weight gradients + input gradients of every layer but the first
  (3F - F_first per example); an attack step forward + input gradient (2F).
- Memory is the peak of torch's CPU allocations (or device allocations on a GPU) plus host
  buffers outside torch (raw data set files); it is a max over phases (data build, training
  step, each evaluation pass, study steps), each a sum of live terms.
- Every term names the JSON path of the spec field that dominates it (the factor whose value
  is largest relative to its usual size), so an admission error can say which field to lower.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Iterable

FLOAT = 4  # bytes of a float32 element (every tensor advcore trains on)
LONG = 8  # bytes of a class label (int64)

Loc = tuple  # JSON path as a tuple: ("evaluation", "attacks", 2, "steps")


def path_str(loc: Loc) -> str:
    """("evaluation", "attacks", 2, "steps") -> "evaluation.attacks[2].steps"."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


@dataclass(frozen=True)
class Factor:
    """One spec field a term scales with. `baseline` is the field's usual large size (the
    papers' scale: d = 3072, 10^4 samples, 100 attack steps, ...), so value / baseline ranks
    which field is out of the ordinary in a term."""

    loc: Loc
    value: float
    baseline: float = 1.0

    @property
    def path(self) -> str:
        return path_str(self.loc)

    @property
    def weight(self) -> float:
        return self.value / max(self.baseline, 1e-12)


@dataclass(frozen=True)
class Term:
    """One additive part of a quantity (FLOPs or bytes), with the fields it scales with."""

    name: str  # what it counts: "training", "evaluation.attacks[0]", "data", ...
    value: float
    factors: tuple[Factor, ...] = ()

    @property
    def dominant(self) -> Factor | None:
        return max(self.factors, key=lambda f: f.weight, default=None)

    @property
    def path(self) -> str | None:
        top = self.dominant
        return top.path if top is not None else None

    def as_dict(self) -> dict:
        return {"name": self.name, "value": self.value, "path": self.path}


def term(name: str, value: float, *factors: Factor | Iterable[Factor]) -> Term:
    flat: list[Factor] = []
    for f in factors:
        flat.extend([f] if isinstance(f, Factor) else f)
    return Term(name, float(value), tuple(flat))


@dataclass(frozen=True)
class Phase:
    """Memory live at one moment: the terms are summed; the peak is the largest phase."""

    name: str
    terms: tuple[Term, ...]

    @property
    def bytes(self) -> float:
        return sum(t.value for t in self.terms)


@dataclass
class Ledger:
    """Accumulates a run's terms: flops and stored bytes add up; memory takes the worst phase."""

    flops: list[Term] = field(default_factory=list)
    stored: list[Term] = field(default_factory=list)
    phases: list[Phase] = field(default_factory=list)
    n_evaluations: int = 0

    def phase(self, name: str, *terms: Term | Iterable[Term]) -> None:
        flat: list[Term] = []
        for t in terms:
            flat.extend([t] if isinstance(t, Term) else t)
        self.phases.append(Phase(name, tuple(flat)))

    def extend(self, other: "Ledger") -> None:
        self.flops += other.flops
        self.stored += other.stored
        self.phases += other.phases
        self.n_evaluations += other.n_evaluations


@dataclass(frozen=True)
class Cost:
    """The estimate of one spec. `flops`, `peak_bytes` and `stored_bytes` are totals; the
    terms say where they come from (peak: the terms of the worst phase, `peak_phase`)."""

    flops: float
    peak_bytes: float
    stored_bytes: float
    n_evaluations: int
    flop_terms: tuple[Term, ...]
    peak_terms: tuple[Term, ...]
    stored_terms: tuple[Term, ...]
    peak_phase: str

    QUANTITIES = ("flops", "peak_bytes", "stored_bytes")

    def terms(self, quantity: str) -> tuple[Term, ...]:
        return {"flops": self.flop_terms, "peak_bytes": self.peak_terms,
                "stored_bytes": self.stored_terms}[quantity]

    def dominant(self, quantity: str) -> Term | None:
        """The largest term of `quantity`; its `.path` is the field to lower."""
        return max(self.terms(quantity), key=lambda t: t.value, default=None)

    def path(self, quantity: str) -> str | None:
        top = self.dominant(quantity)
        return top.path if top is not None else None

    def as_dict(self) -> dict:
        """JSON-able estimate: totals, the dominant path of each, and the terms."""
        return {"flops": self.flops, "peak_bytes": self.peak_bytes,
                "stored_bytes": self.stored_bytes, "n_evaluations": self.n_evaluations,
                "peak_phase": self.peak_phase,
                "dominant": {q: self.path(q) for q in self.QUANTITIES},
                "terms": {q: [t.as_dict() for t in self.terms(q)] for q in self.QUANTITIES}}


# ----------------------------------------------------------------------------- kind costs


@dataclass(frozen=True)
class DataCost:
    """What a data model costs and looks like, from its spec alone (no data is built)."""

    n_train: int
    n_test: int
    in_shape: tuple[int, ...]  # one example's feature dims (d,), (P, d) or (C, H, W)
    n_classes: int | None  # fine classes (None: binary data without sub-classes)
    binary: bool  # main labels are binary +-1 (else the main task is k-class)
    has_readout: bool  # a J+ split exists (fine-label models are read out as binary)
    features: dict[str, tuple[int, int]]  # feature set -> (directions, elements of each)
    build_bytes: float  # transient bytes while building one seed, beyond its own tensors
    host_bytes: float  # memory outside torch held during the run (raw files, numpy arrays)
    n_loc: Loc  # the field that sets the sample count (data.n_train)
    size: tuple[Factor, ...]  # fields that set the input size (data.d, data.patches, ...)
    has_direction: bool = False  # a model-independent attack direction (Dataset.attack_direction)

    @property
    def in_elements(self) -> int:
        return math.prod(self.in_shape)

    @property
    def feature_ndim(self) -> int:
        return len(self.in_shape)

    def samples(self, split: str) -> Factor:
        n = self.n_train if split == "train" else self.n_test
        loc = self.n_loc[:-1] + (f"n_{split}",)
        return Factor(loc, n, 10_000)

    def label_bytes(self) -> int:
        return FLOAT + (LONG if self.n_classes is not None else 0)

    def seed_bytes(self) -> float:
        """One seed's tensors: inputs, labels (main and fine) and feature directions."""
        n = self.n_train + self.n_test
        feats = sum(k * dim for k, dim in self.features.values()) * FLOAT
        return n * (self.in_elements * FLOAT + self.label_bytes()) + feats


@dataclass(frozen=True)
class ModelCost:
    """A learner's cost per seed and per example (FLOPs as 2 * multiply-adds)."""

    params: int  # trainable parameters (and buffers of that size) per seed
    forward: float  # FLOPs of one forward pass
    first: float  # FLOPs of the layers that read the input (no input gradient in training)
    representation: float  # FLOPs up to the penultimate layer (features, decoupling)
    rep_dim: int  # penultimate width (0: the learner exposes no representation)
    backward_bytes: float  # activations kept for a backward pass and its gradients, at their peak
    eval_bytes: float  # peak activation bytes of a no-grad forward pass
    n_neurons: int  # rows of first_layer() (correlation matrices)
    first_dim: int  # columns of first_layer() (= input size when they live in input space)
    factors: tuple[Factor, ...]  # learner fields the cost scales with
    # elements of the largest weight whose gradient is formed in a product's layout and then
    # copied into .grad (einsum / bmm layers; convolutions write theirs in place)
    grad_copy: int = 0

    @property
    def train_step(self) -> float:
        """Forward + weight gradients + input gradients of every non-first layer."""
        return 3 * self.forward - self.first

    @property
    def input_gradient(self) -> float:
        """Forward + input gradient through every layer (one attack step)."""
        return 2 * self.forward


@dataclass(frozen=True)
class AttackContext:
    """What an attack's cost depends on besides its own spec."""

    model: ModelCost
    data: DataCost
    loc: Loc  # the attack spec's JSON path ("evaluation", "attacks", 2)
    directions: int | None = None  # a subspace passed as a basis tensor: its size
    readout: str | None = None  # the binary read-out attacked (sum / argmax); None: none

    @property
    def in_elements(self) -> int:
        return self.data.in_elements


@dataclass(frozen=True)
class AttackCost:
    """One attack at one radius, per attacked example: FLOPs of finding the perturbation (the
    final evaluation forward is counted by robust_accuracy) and its working memory."""

    flops: float
    bytes: float
    factors: tuple[Factor, ...]


# ----------------------------------------------------------------------------- registries

DataCostFn = Callable[..., DataCost]
DATA_COSTS: dict[str, DataCostFn] = {}


def register_cost(kind: str) -> Callable[[DataCostFn], DataCostFn]:
    """Decorator for a data module's cost function (next to its builder)."""
    def wrap(fn: DataCostFn) -> DataCostFn:
        DATA_COSTS[kind] = fn
        return fn

    return wrap


def data_cost(data_spec) -> DataCost:
    from advcore.data import _load_builders

    _load_builders()
    if data_spec.kind not in DATA_COSTS:
        raise NotImplementedError(f"no cost function for data kind {data_spec.kind!r}")
    return DATA_COSTS[data_spec.kind](data_spec)


def model_cost(learner_spec, in_shape: tuple[int, ...], n_outputs: int) -> ModelCost:
    from advcore.learners import LEARNERS, _load

    _load()
    if learner_spec.kind not in LEARNERS:
        raise NotImplementedError(f"no learner for kind {learner_spec.kind!r}")
    return LEARNERS[learner_spec.kind].cost(learner_spec, tuple(in_shape), n_outputs)


def n_outputs(spec, data: DataCost) -> int:
    """Outputs of the learner (advcore.train.make_task): 1 for a binary head, else classes."""
    fine = spec.training.labels == "fine" or not data.binary
    return data.n_classes if fine and data.n_classes else 1


def seeds_factor(spec) -> Factor:
    return Factor(("seeds",), len(spec.seed_list), 5)


def model_state_bytes(spec, model: ModelCost) -> float:
    """Parameters, their gradients and the optimizer's state (Adam: 2 moments; SGD: a momentum
    buffer when momentum > 0), all seeds."""
    opt = spec.training.optimizer
    state = 2 if opt.kind == "adam" else int(opt.momentum > 0)
    return len(spec.seed_list) * model.params * FLOAT * (2 + state)


# ----------------------------------------------------------------------------- composition


def run_cost(spec, data: DataCost, *, prefix: str = "") -> tuple[Ledger, ModelCost]:
    """Train + evaluate one model (advcore.run.run_experiment without the data build)."""
    from advcore.evaluate import evaluation_cost
    from advcore.train import training_cost

    model = model_cost(spec.learner, data.in_shape, n_outputs(spec, data))
    ledger = Ledger()
    base = persistent_terms(spec, data) + [
        term(f"{prefix}model state", model_state_bytes(spec, model),
             seeds_factor(spec), model.factors)]
    ledger.extend(training_cost(spec, data, model, base, prefix=prefix))
    ledger.extend(evaluation_cost(spec, data, model, base, prefix=prefix))
    return ledger, model


def persistent_terms(spec, data: DataCost) -> list[Term]:
    """Memory held for the whole run: every seed's data set (stacked) and host buffers."""
    S = len(spec.seed_list)
    out = [term("data", S * data.seed_bytes(), seeds_factor(spec), data.samples("train"),
                data.samples("test"), data.size)]
    if data.host_bytes:
        out.append(term("data files", data.host_bytes, data.size))
    return out


def data_build_phase(spec, data: DataCost) -> Phase:
    """Building S seeds then stacking them: the per-seed sets and the stacked copy coexist;
    while the last seed is built, its builder's temporaries come on top of the others."""
    S = len(spec.seed_list)
    stack = term("data (per-seed copies while stacking)", S * data.seed_bytes(),
                 seeds_factor(spec), data.samples("train"), data.samples("test"), data.size)
    build = term("data build temporaries", data.build_bytes, data.samples("train"), data.size)
    return Phase("data", (*persistent_terms(spec, data), max(stack, build, key=lambda t: t.value)))


def estimate(spec) -> Cost:
    """The cost of running `spec` (resolved here unless resolve() made it) with
    advcore.run.run_experiment."""
    spec = spec.as_resolved()
    data = data_cost(spec.data)
    ledger = Ledger()
    ledger.phases.append(data_build_phase(spec, data))
    if spec.study is not None:
        from advcore.studies import STUDY_COSTS

        if spec.study.kind not in STUDY_COSTS:
            raise NotImplementedError(f"no cost function for study kind {spec.study.kind!r}")
        ledger.extend(STUDY_COSTS[spec.study.kind](spec, data))
    else:
        run, _ = run_cost(spec, data)
        ledger.extend(run)
    ledger.stored.append(term("summary", summary_bytes(spec, data), seeds_factor(spec)))
    worst = max(ledger.phases, key=lambda p: p.bytes)
    return Cost(flops=sum(t.value for t in ledger.flops), peak_bytes=worst.bytes,
                stored_bytes=sum(t.value for t in ledger.stored),
                n_evaluations=ledger.n_evaluations, flop_terms=tuple(ledger.flops),
                peak_terms=worst.terms, stored_terms=tuple(ledger.stored), peak_phase=worst.name)


# ----------------------------------------------------------------------------- storage

# the service store's sizes (fitted on SQLite by benchmarks/cost_bench.py --store)
METRIC_POINT_BYTES = 140  # one metric row with its index entry
SERIES_BYTES = 250  # one (name, seed) series: its catalogue row and min/max block roll-up
MATRIX_ROW_BYTES = 300  # one matrix row's fixed part (ids, name, step)
LABEL_BYTES = 12  # one row / column label (JSON)
JSON_NUMBER_BYTES = 20  # one float in the stored summary (JSON text)


def metric_bytes(points: float, series: float) -> float:
    """Stored metric points, `series` distinct (name, seed) series among them."""
    return points * METRIC_POINT_BYTES + series * SERIES_BYTES


def matrix_bytes(rows: int, cols: int) -> float:
    """A stored matrix: float32 values, its labels and the row's fixed part."""
    return rows * cols * FLOAT + (rows + cols) * LABEL_BYTES + MATRIX_ROW_BYTES


def summary_bytes(spec, data: DataCost) -> float:
    """The stored summary (advcore.summary.RunSummary): scalars per seed and for the mean;
    every attack's number and the minimum per threat and radius, per-feature correlations up
    to MAX_LISTED_FEATURES per set, never a matrix."""
    from advcore.summary import MAX_LISTED_FEATURES

    S = len(spec.seed_list)
    attacks = spec.evaluation.attacks
    radii = sum(len(a.radii) for a in attacks)
    mins = len({(a.threat_label, float(r)) for a in attacks for r in a.radii})
    features = sum(min(k, MAX_LISTED_FEATURES) + 3 for k, _ in data.features.values())
    scalars = 20 + 4 * radii + 8 * mins + features
    return (S + (S > 1)) * scalars * JSON_NUMBER_BYTES * 2

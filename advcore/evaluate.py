"""One evaluation of a batched model: losses, clean / robust accuracies, margins, correlations.

Metric names follow api.md: `{split}/loss`, `{split}/clean_accuracy`,
`test/robust_accuracy/{attack.label}@{radius}` (every attack at every radius, on the first
`n_attack` test points), `fine/{split}/clean_accuracy` for the k-class task of a fine-label run
whose main classifier is the binary read-out, `test/margin_mean|min|median`, `corr/*`,
`weights/*`. The last evaluation's per-seed values are kept in `self.final` for the summary.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from advcore.cost import (FLOAT, LONG, AttackContext, Factor, Ledger, Term, matrix_bytes,
                          metric_bytes, seeds_factor, term)
from advcore.data import Dataset
from advcore.measure import correlation_records, weight_norm_records
from advcore.observe import MetricRecord, Observer
from advcore.schedule import evaluation_plan
from advcore.spec import robust_metric
from advcore.train import (Task, attack_generator, attack_kwargs, attacked_view, binary_readout,
                           fine_view, margins, per_seed_loss, targets)


class Evaluator:
    def __init__(self, spec, model, data: Dataset, task: Task, observer: Observer) -> None:
        self.spec, self.model, self.data, self.task, self.observer = spec, model, data, task, observer
        self.seeds = list(spec.seed_list)
        self.record = set(spec.evaluation.record)
        self.plan = evaluation_plan(spec.evaluation, spec.training.epochs)
        self.final: dict = {}
        self.robust_accuracy = None
        if spec.evaluation.attacks:  # lazily: runs without attacks never load them
            from advcore.attacks import robust_accuracy

            self.robust_accuracy = robust_accuracy

    def _records(self, name: str, values: torch.Tensor, step: int) -> list[MetricRecord]:
        return [MetricRecord(name, step, v, seed) for seed, v in zip(self.seeds, values.tolist())]

    @torch.no_grad()
    def _clean(self, step: int) -> list[MetricRecord]:
        out = []
        for split in ("train", "test"):
            x = getattr(self.data, f"x_{split}")
            logits = self.model(x)
            loss = per_seed_loss(logits, targets(self.data, self.task, split))
            y = getattr(self.data, f"y_{split}")
            main_logits = binary_readout(logits, self.task.positive_classes, self.task.readout) \
                if self.task.has_readout else logits
            margin = margins(main_logits, y)  # (S, N)
            acc = (margin > 0).float().mean(1)
            out += self._records(f"{split}/loss", loss, step) + self._records(f"{split}/clean_accuracy", acc, step)
            self.final[f"clean/{split}"] = acc
            fine = fine_view(self.model, self.task, getattr(self.data, f"y_{split}_fine"))
            if fine is not None:
                fine_acc = (margins(logits, fine[1]) > 0).float().mean(1)
                out += self._records(f"fine/{split}/clean_accuracy", fine_acc, step)
                self.final[f"fine/{split}"] = fine_acc
            if split == "test" and "margins" in self.record:
                out += self._records("test/margin_mean", margin.mean(1), step)
                out += self._records("test/margin_min", margin.amin(1), step)
                out += self._records("test/margin_median", margin.median(1).values, step)
        return out

    def _robust(self, step: int) -> list[MetricRecord]:
        out, results, mins = [], [], []
        splits = ["test", "train"] if self.spec.evaluation.attack_train else ["test"]
        n = self.spec.evaluation.n_attack
        for split in splits:
            x = getattr(self.data, f"x_{split}")[:, :n]
            y_main = getattr(self.data, f"y_{split}")[:, :n]
            y_fine = getattr(self.data, f"y_{split}_fine")
            y_fine = y_fine[:, :n] if y_fine is not None else None
            worst = WorstCase()
            for i, attack in enumerate(self.spec.evaluation.attacks):
                fn, y = attacked_view(self.model, self.task, attack, y_main, y_fine)
                gen = attack_generator(self.seeds, f"eval/{split}/{i}/{step}", x.device)
                res = self.robust_accuracy(fn, x, y, attack, generator=gen,
                                           **attack_kwargs(attack, self.data, self.task))
                acc = res.accuracy.reshape(len(res.radii), -1)  # (radii, S)
                for radius, per_seed in zip(res.radii, acc):
                    out += self._records(robust_metric(split, attack.label, radius), per_seed, step)
                    if split == "test":
                        results.append((attack.label, attack.kind, attack.norm,
                                        float(radius), per_seed.detach().cpu()))
                worst.add(attack, res.radii, res.margins)
                if split == "test" and res.flags:
                    self.final.setdefault("flags", {})[attack.label] = _plain(res.flags)
            for threat, norm, radius, per_seed, labels in worst.accuracies():
                out += self._records(robust_metric(split, threat, radius), per_seed, step)
                if split == "test":
                    mins.append((threat, norm, radius, per_seed.detach().cpu(), labels))
        self.final["robust"] = results
        self.final["robust_min"] = mins
        return out

    def __call__(self, step: int) -> None:
        """Evaluate at `step` (epoch): cheap records always, attacks and stored matrices when
        the plan (advcore.schedule) has them at this step; step 0 is never attacked."""
        self.model.eval()
        records = self._clean(step)
        if step in self.plan.attacks and self.robust_accuracy is not None:
            records += self._robust(step)
        if "weight_norms" in self.record:
            records += weight_norm_records(self.model, step, self.seeds)
        last = step == self.spec.training.epochs
        store = step in self.plan.matrices or last
        if "correlations" in self.record or last:
            metrics, matrices, raw = correlation_records(self.model, self.data.features, step, self.seeds)
            self.final["raw"] = raw
            if "correlations" in self.record:
                records += metrics
            if matrices and store:  # the final matrices always: the summary holds scalars only
                self.observer.on_matrices(matrices)
        if "decoupling" in self.record and self.data.y_test_fine is not None:
            records += self._decoupling(step, store)
        self.observer.on_metrics(records)
        self.model.train()

    def _decoupling(self, step: int, store: bool) -> list[MetricRecord]:
        """Class-cosine matrices of advcore.decoupling on the test set (2- vs 10-class study)."""
        from advcore.decoupling import decoupling_records

        metrics, matrices, views = decoupling_records(
            self.model, self.data.x_test, self.data.y_test_fine, self.data.n_classes, step, self.seeds)
        if store:
            self.observer.on_matrices(matrices)
        self.final["decoupling"] = {k: v for k, v in views.items() if k.endswith("mean_max_cosine")}
        return metrics


class WorstCase:
    """Per threat (AttackSpec.threat_label) and radius, each point's worst margin over every
    attack run on it: the point is robust only if no attack broke it."""

    def __init__(self) -> None:
        self._worst: dict[tuple[str, float], torch.Tensor] = {}  # (threat, radius) -> (S, N)
        self._labels: dict[tuple[str, float], list[str]] = {}
        self._norms: dict[str, str] = {}

    def add(self, attack, radii: list[float], margins: torch.Tensor) -> None:
        """margins (R, S, N): the attack's worst margin per radius and point."""
        threat = attack.threat_label
        self._norms[threat] = attack.norm
        for radius, m in zip(radii, margins):
            key = (threat, float(radius))
            seen = self._worst.get(key)
            self._worst[key] = m if seen is None else torch.minimum(seen, m)
            labels = self._labels.setdefault(key, [])
            if attack.label not in labels:
                labels.append(attack.label)

    def accuracies(self):
        """(threat, norm, radius, robust accuracy per seed (S,), attack labels) per group."""
        for (threat, radius), worst in sorted(self._worst.items()):
            yield (threat, self._norms[threat], radius, (worst > 0).float().mean(-1),
                   self._labels[(threat, radius)])


def _plain(value):
    """Attack flags as JSON-able values (tensors -> lists / numbers)."""
    if isinstance(value, torch.Tensor):
        return value.item() if value.numel() == 1 else value.detach().cpu().tolist()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


# ----------------------------------------------------------------------------- cost


@dataclass(frozen=True)
class Schedule:
    """How many evaluations of a run record metrics, run the attacks, and store matrices."""

    evaluations: int
    attacked: int
    matrices: int


def schedule(spec) -> Schedule:
    """Counts of advcore.schedule's plan: every evaluation (step 0 included), those with the
    attacks, and those that store matrices."""
    plan = evaluation_plan(spec.evaluation, spec.training.epochs)
    return Schedule(evaluations=len(plan.evaluated), attacked=len(plan.attacks),
                    matrices=len(plan.matrices))


def _field(evaluation, name: str) -> str:
    """The schedule field that sets a count: `name` when given, else the shared `every`."""
    return name if getattr(evaluation, name) is not None else "every"


def evaluation_cost(spec, data, model, base: list[Term], *, prefix: str = "") -> Ledger:
    """advcore.cost.Ledger of every `Evaluator` call of a run: clean passes over both splits,
    each attack on each attacked split, correlations, decoupling, and the stored records."""
    from advcore.attacks import robust_accuracy_cost
    from advcore.train import attacked_readout_of
    from advcore.cost import n_outputs as outputs
    from advcore.measure import CORRELATION_SETS

    ev, S = spec.evaluation, len(spec.seed_list)
    plan = schedule(spec)
    n_evals, attacked = plan.evaluations, plan.attacked
    C = outputs(spec, data)
    has_readout = C > 1 and data.has_readout
    record = set(ev.record)
    evals = Factor(("evaluation", _field(ev, "record_every")), n_evals, 50)
    seeds = seeds_factor(spec)
    ledger = Ledger(n_evaluations=n_evals)
    n_all = data.n_train + data.n_test
    ledger.flops.append(term(f"{prefix}evaluation (clean)", n_evals * S * n_all * model.forward,
                             evals, data.samples("train"), seeds, *model.factors, *data.size))
    widest = max(data.n_train, data.n_test)
    ledger.phase(f"{prefix}clean evaluation", base, term(
        f"{prefix}evaluation (clean)", S * widest * (model.eval_bytes + C * FLOAT * 3),
        data.samples("train"), seeds, *model.factors, *data.size))
    per_eval = 4 + 2 * has_readout + 3 * ("margins" in record) + 2 * ("weight_norms" in record)
    matrices = 0.0
    # correlations: every evaluation when recorded, else once (the summary's final matrices)
    sets = [(k, dim) for name, (k, dim) in data.features.items()
            if name in CORRELATION_SETS and dim == model.first_dim]
    corr_evals = n_evals if "correlations" in record else 1
    corr_flops = sum(2 * 2 * model.n_neurons * k * dim for k, dim in sets)
    if "correlations" in record:
        per_eval += sum(k for k, _ in sets)
        matrices += sum(matrix_bytes(model.n_neurons, k) for k, _ in sets)
    else:  # the final matrices are stored all the same (the summary holds scalars only)
        ledger.stored.append(term(f"{prefix}final matrices",
                                  S * sum(matrix_bytes(model.n_neurons, k) for k, _ in sets),
                                  seeds, *model.factors, *data.size))
    ledger.flops.append(term(f"{prefix}correlations", corr_evals * S * corr_flops, evals,
                             *model.factors, *data.size))
    if "decoupling" in record and data.n_classes is not None:
        k, H, D = data.n_classes, model.rep_dim, data.in_elements
        flops = 0.0
        if model.first_dim == D:
            flops += 2 * data.n_test * k * D + 2 * model.n_neurons * k * D
            matrices += matrix_bytes(model.n_neurons, k)
            per_eval += 1
        if H:
            flops += data.n_test * model.representation + 2 * data.n_test * k * H
            matrices += matrix_bytes(H, k)
            per_eval += 1
            if C > 1:
                flops += 2 * data.n_test * k * H + 2 * C * k * H
                matrices += matrix_bytes(C, k)
                per_eval += 1
        ledger.flops.append(term(f"{prefix}decoupling", n_evals * S * flops, evals,
                                 data.samples("test"), *model.factors, *data.size))
        ledger.phase(f"{prefix}decoupling", base, term(
            f"{prefix}decoupling",
            S * data.n_test * (model.eval_bytes + (H + k) * FLOAT + k * LONG),
            data.samples("test"), seeds, *model.factors, *data.size))
    splits = ["test", "train"] if ev.attack_train else ["test"]
    robust_points = 0
    for i, attack in enumerate(ev.attacks):
        ctx = AttackContext(model, data, ("evaluation", "attacks", i),
                            readout=attacked_readout_of(spec, data, attack))
        for split in splits:
            n_split = data.n_test if split == "test" else data.n_train
            n = min(ev.n_attack or n_split, n_split)
            name = f"{prefix}evaluation.attacks[{i}]" + ("" if split == "test" else " (train)")
            n_factor = Factor(("evaluation", "n_attack"), n, 1000)
            flops, peak = robust_accuracy_cost(attack, ctx, S, n, name, (n_factor, seeds))
            ledger.flops.append(Term(name, flops.value * attacked, (*flops.factors, Factor(
                ("evaluation", _field(ev, "attack_every")), attacked, 50))))
            ledger.phase(f"{prefix}evaluation.attacks[{i}] ({split})", base, peak)
            robust_points += len(attack.radii)
    # the minimum over attacks: one series per threat and radius (advcore.summary)
    robust_points += len({(a.threat_label, float(r)) for a in ev.attacks for r in a.radii}) \
        * len(splits)
    points = S * (n_evals * per_eval + attacked * robust_points)
    ledger.stored.append(term(
        f"{prefix}metrics", metric_bytes(points, S * (per_eval + robust_points)),
        evals, seeds, *(Factor(("evaluation", "attacks", i, "radii"), len(a.radii), 10)
                        for i, a in enumerate(ev.attacks))))
    if matrices:
        ledger.stored.append(term(f"{prefix}matrices", plan.matrices * S * matrices,
                                  Factor(("evaluation", _field(ev, "matrix_every")),
                                         plan.matrices, 50),
                                  seeds, *model.factors, *data.size))
    return ledger

"""Studies: experiments that are more than one training run, still reachable from one spec.

`spec.study` replaces the single run of advcore.run.run_experiment:
- `separation`: the data-separation table of advcore.separation (nothing is trained);
- `feature_attacks`: trains a standard and an adversarially trained model on the same data and
  seeds, reconstructs per-class features from each (advcore.features) and reports the targeted
  success of NRF-PGD (non-robust subspace, from the standard model) and RF-PGD (robust subspace,
  from the adversarial model) against both models: the seed's Table 2.
Metrics stream through the observer like any run; the returned dict is the summary.
"""

from __future__ import annotations

from dataclasses import replace

from advcore.device import generator
from advcore.evaluate import Evaluator
from advcore.learners import build_learner
from advcore.observe import Canceled, MetricRecord
from advcore.spec import format_radius
from advcore.stats import mean, sample_std
from advcore.train import attack_generator, make_task, train

SUBSPACES = {"non_robust": "standard", "robust": "adversarial"}  # subspace <- whose features


class _Phase:
    """Forwards to the run's observer with metric names prefixed and steps/progress offset, so
    two models trained in one study share one series space and one progress bar."""

    def __init__(self, observer, prefix: str, offset: int, total: int) -> None:
        self.observer, self.prefix, self.offset, self.total = observer, prefix, offset, total

    def on_start(self, total_steps, seeds) -> None:
        pass

    def on_metrics(self, records) -> None:
        self.observer.on_metrics([MetricRecord(self.prefix + r.name, r.step + self.offset, r.value, r.seed)
                                  for r in records])

    def on_matrices(self, records) -> None:
        from dataclasses import replace

        self.observer.on_matrices([replace(r, name=self.prefix + r.name, step=r.step + self.offset)
                                   for r in records])

    def on_progress(self, step, total) -> None:
        self.observer.on_progress(step + self.offset, self.total)

    def should_stop(self) -> bool:
        return self.observer.should_stop()


def run_study(spec, data, observer, device) -> dict:
    """Dispatch on spec.study.kind; `data` is the stacked Dataset on `device`."""
    observer.on_start(spec.total_steps, spec.seed_list)
    if spec.study.kind == "separation":
        return separation_study(spec, data, observer)
    return feature_attack_study(spec, data, observer, device)


def separation_study(spec, data, observer) -> dict:
    from advcore.separation import separation_table

    study, seeds = spec.study, spec.seed_list
    rows = separation_table(data, list(study.norms), study.labels)
    observer.on_metrics([MetricRecord(f"separation/{row['norm']}/{key}", 1, value, seeds[row["seed_index"]])
                         for row in rows for key, value in row.items() if key not in ("seed_index", "norm")])
    observer.on_progress(1, 1)
    table = [{"seed": seeds[row.pop("seed_index")], **row} for row in rows]
    return {"separation": {"dataset": getattr(spec.data, "dataset", spec.data.kind), "eps": study.eps,
                           "labels": study.labels, "rows": table}}


def _train_phase(spec, data, observer, device, mode: str, offset: int):
    """Train one model of the study (mode standard | adversarial); returns (model, Evaluator)."""
    training = spec.training.model_copy(update={
        "mode": mode, "adversary": spec.study.adversary if mode == "adversarial" else None})
    sub = spec.model_copy(update={"training": training, "study": None})
    task = make_task(sub, data)
    model = build_learner(sub, data.in_shape, task.n_outputs, spec.seed_list, device)
    phase = _Phase(observer, f"{mode}/", offset, spec.total_steps)
    evaluator = Evaluator(sub, model, data, task, phase)
    train(sub, model, data, task, phase, evaluator)
    model.eval()
    return model, evaluator


def feature_attack_study(spec, data, observer, device) -> dict:
    from advcore.data.images import kept_classes
    from advcore.features import feature_bases, pair_basis, targeted_success

    study, seeds, epochs = spec.study, spec.seed_list, spec.training.epochs
    classes = kept_classes(spec.data)
    for pair in study.pairs:
        if any(c not in classes for c in pair):
            raise ValueError(f"pair {pair} names a class outside the data's classes {classes}")
    k, box = data.n_classes, data.box
    models, per_model = {}, {}
    for i, mode in enumerate(("standard", "adversarial")):
        model, evaluator = _train_phase(spec, data, observer, device, mode, i * epochs)
        models[mode] = model
        per_model[mode] = {"clean_accuracy": {  # the k-class task (fine/ when there is a read-out)
            split: float(evaluator.final.get(f"fine/{split}", evaluator.final[f"clean/{split}"]).mean())
            for split in ("train", "test")}}
    # top-level clean_accuracy keeps api.md's {"train", "test"} shape: the standard model's
    summary = {"clean_accuracy": per_model["standard"]["clean_accuracy"], "models": per_model}
    bases = {mode: feature_bases(models[mode], data.x_train, data.y_train_fine, k, study.reconstruction,
                                 box=box, generators=[generator(s, f"reconstruct/{mode}") for s in seeds])
             for mode in models}
    rows, records = [], []
    for mode, model in models.items():
        for subspace, source_model in SUBSPACES.items():
            for src, tgt in study.pairs:
                if observer.should_stop():  # the attacks can take long on a GPU-sized study
                    raise Canceled("canceled during the feature attacks")
                s_idx, t_idx = classes.index(src), classes.index(tgt)
                basis = pair_basis(bases[source_model], s_idx, t_idx)
                for radius in study.attack.radii:
                    gens = attack_generator(seeds, f"feature_attack/{mode}/{subspace}/{src}/{tgt}/{radius}",
                                            data.x_test.device)
                    success = targeted_success(model, data.x_test, data.y_test_fine, s_idx, t_idx,
                                               study.attack, radius, basis=basis,
                                               feature_ndim=data.feature_ndim, generators=gens)
                    per_seed = success.cpu().tolist()
                    name = f"feature_attacks/{mode}/{subspace}/{src}to{tgt}@{format_radius(radius)}"
                    records += [MetricRecord(name, 2 * epochs, v, seed) for seed, v in zip(seeds, per_seed)]
                    rows.append({"model": mode, "subspace": subspace, "source": src, "target": tgt,
                                 "radius": float(radius), "success": mean(per_seed),
                                 "std": sample_std(per_seed), "per_seed": per_seed})
    observer.on_metrics(records)
    summary["feature_attacks"] = rows
    return summary


# ----------------------------------------------------------------------------- costs


def feature_attack_cost(spec, data):
    """advcore.cost.Ledger of `feature_attack_study`: two trainings (with their evaluations),
    two reconstructions, then targeted subspace PGD from each source class for every model,
    subspace, pair and radius."""
    from advcore.attacks import attack_cost
    from advcore.cost import (FLOAT, AttackContext, Factor, Ledger, metric_bytes,
                              persistent_terms, run_cost, seeds_factor, term)
    from advcore.features import reconstruction_cost

    study, S = spec.study, len(spec.seed_list)
    ledger = Ledger()
    models = []
    for mode in ("standard", "adversarial"):
        training = spec.training.model_copy(update={
            "mode": mode, "adversary": study.adversary if mode == "adversarial" else None})
        sub = spec.model_copy(update={"training": training, "study": None})
        run, model = run_cost(sub, data, prefix=f"{mode}/")
        if mode == "adversarial":  # its loc is study.adversary, not training.adversary
            move = ("training", "adversary"), ("study", "adversary")
            run.flops = [_relocate(t, *move) for t in run.flops]
            run.phases = [replace(p, terms=tuple(_relocate(t, *move) for t in p.terms))
                          for p in run.phases]
        ledger.extend(run)
        models.append(model)
    model = models[0]
    base = persistent_terms(spec, data) + [term("models", 2 * S * model.params * FLOAT * 2,
                                                seeds_factor(spec), model.factors)]
    recon = study.reconstruction
    r_loc = ("study", "reconstruction")
    r_factors = (Factor((*r_loc, "steps"), recon.steps, 1000),
                 Factor((*r_loc, "n_per_class"), recon.n_per_class, 100), seeds_factor(spec),
                 *model.factors, *data.size)
    flops, working = reconstruction_cost(recon, model, data, S)
    ledger.flops.append(term("reconstruction", 2 * flops, r_factors))
    ledger.phase("reconstruction", base, term("reconstruction", working, r_factors))
    k = data.n_classes or 1
    K = 2 * min(recon.n_directions, recon.n_per_class, data.in_elements)  # source + target bases
    n_src = -(-data.n_test // k)  # test points of the source class (balanced classes)
    pgd = attack_cost(study.attack, AttackContext(model, data, ("study", "attack"), directions=K))
    calls = 2 * len(SUBSPACES) * len(study.pairs) * len(study.attack.radii)
    a_factors = (Factor(("study", "pairs"), len(study.pairs), 8),
                 Factor(("study", "attack", "radii"), len(study.attack.radii), 4),
                 Factor(("study", "reconstruction", "n_directions"), K, 32), *pgd.factors,
                 seeds_factor(spec), *model.factors, *data.size)
    ledger.flops.append(term("feature attacks", calls * S * n_src * (pgd.flops + model.forward),
                             a_factors))
    ledger.phase("feature attacks", base, term(
        "feature attacks", S * n_src * (pgd.bytes + 3 * data.in_elements * FLOAT), a_factors))
    ledger.stored.append(term("feature attack metrics", metric_bytes(S * calls, S * calls),
                              a_factors))
    return ledger


def _relocate(t, old: tuple, new: tuple):
    """The term with factor paths under `old` moved to `new`."""
    return replace(t, factors=tuple(
        replace(f, loc=new + f.loc[len(old):]) if f.loc[:len(old)] == old else f
        for f in t.factors))


def _separation_cost(spec, data):
    from advcore.separation import separation_cost

    return separation_cost(spec, data)


# one cost function per study kind (advcore.cost.estimate dispatches on spec.study.kind)
STUDY_COSTS = {"separation": _separation_cost, "feature_attacks": feature_attack_cost}

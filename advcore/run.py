"""Run one experiment spec end to end: the function the worker, the CLI and notebooks call.

`run_experiment` resolves the spec, builds each seed's data and the batched learner, trains,
streams MetricRecord / MatrixRecord through the observer and returns the summary of api.md:

    {"clean_accuracy": {"train": a, "test": b},
     "robust_accuracy": [{"attack": label, "radius": r, "accuracy": a}, ...],   # final evaluation
     "cosine_matrix": [[...]],          # final neuron x feature cosines (multi_cluster / images)
     "correlations": {"robust": [...], "non_robust": [...]},   # final, per class (patch data)
     "fine": {"clean_accuracy": {...}}, # k-class accuracies of a fine-label run with a read-out
     "attack_flags": {label: {...}},    # gradient-masking suspicions reported by the attacks
     "decoupling": {"first_layer/mean_max_cosine": c, ...},  # record "decoupling" (images)
     "duration_s": t, "device": "cpu", "threads": n}   # n: torch intra-op threads

With several seeds (`seeds: [..]`) the summary also has "seeds": [one such summary per seed,
plus "seed"], and every top-level number is the MEAN over seeds (accuracies, correlations).
The top-level cosine_matrix is the first seed's: neurons of different seeds are unrelated, so
an average of their matrices would describe no network.

A spec with a `study` runs advcore.studies instead; its summary carries "separation" (table
rows) or "feature_attacks" (NRF/RF success rows, mean ± std over seeds) and "models".
"""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import torch

from advcore.data import build_data, stack_seeds
from advcore.device import pick_device
from advcore.evaluate import Evaluator
from advcore.learners import build_learner
from advcore.observe import NullObserver, Observer
from advcore.spec import ExperimentSpec, parse_spec
from advcore.train import make_task, train


def _seed_summary(final: dict, s: int) -> dict:
    out: dict = {"clean_accuracy": {"train": float(final["clean/train"][s]),
                                    "test": float(final["clean/test"][s])},
                 "robust_accuracy": [{"attack": label, "radius": radius, "accuracy": float(acc[s])}
                                     for label, radius, acc in final.get("robust", [])]}
    raw = final.get("raw", {})
    if "cosine/cluster" in raw:
        out["cosine_matrix"] = raw["cosine/cluster"][s].cpu().tolist()
    if "corr/robust" in raw or "corr/non_robust" in raw:
        out["correlations"] = {name: raw[f"corr/{name}"][s].cpu().tolist()
                               for name in ("robust", "non_robust") if f"corr/{name}" in raw}
    if "decoupling" in final:  # {"selectivity/mean_max_cosine": x, ...}
        out["decoupling"] = {k: float(v[s]) for k, v in final["decoupling"].items()}
    if "fine/train" in final:
        out["fine"] = {"clean_accuracy": {"train": float(final["fine/train"][s]),
                                          "test": float(final["fine/test"][s])}}
    return out


def _mean(values: list):
    """Elementwise mean of equally shaped nested numbers / dicts / lists."""
    first = values[0]
    if isinstance(first, dict):
        return {k: _mean([v[k] for v in values]) for k in first}
    if isinstance(first, list):
        return [_mean([v[i] for v in values]) for i in range(len(first))]
    if isinstance(first, (int, float)) and not isinstance(first, bool):
        return sum(values) / len(values)
    return first


def summarize(final: dict, seeds: list[int]) -> dict:
    per_seed = [_seed_summary(final, s) for s in range(len(seeds))]
    if len(seeds) == 1:
        return per_seed[0]
    top = _mean(per_seed)
    if "cosine_matrix" in per_seed[0]:
        top["cosine_matrix"] = per_seed[0]["cosine_matrix"]
    top["seeds"] = [{"seed": seed, **summary} for seed, summary in zip(seeds, per_seed)]
    return top


def run_experiment(spec: ExperimentSpec, observer: Observer | None = None,
                   device: str | None = None) -> dict:
    """Train and evaluate `spec` (resolved here); raises advcore.observe.Canceled when the
    observer's should_stop() turns true (polled every epoch). `device` overrides spec.device."""
    started = time.perf_counter()
    observer = observer or NullObserver()
    spec = spec.resolve()
    dev = pick_device(device if device is not None else spec.device)
    seeds = spec.seed_list
    data = stack_seeds([build_data(spec.data, seed, dev) for seed in seeds])
    if spec.study is not None:  # separation table / feature-attack study (advcore.studies)
        from advcore.studies import run_study

        summary = run_study(spec, data, observer, dev)
        summary["duration_s"] = time.perf_counter() - started
        summary["device"] = dev.type
        summary["threads"] = torch.get_num_threads()
        return summary
    task = make_task(spec, data)
    model = build_learner(spec, data.in_shape, task.n_outputs, seeds, dev)
    observer.on_start(spec.total_steps, seeds)
    evaluator = Evaluator(spec, model, data, task, observer)
    train(spec, model, data, task, observer, evaluator)
    summary = summarize(evaluator.final, seeds)
    if "flags" in evaluator.final:
        summary["attack_flags"] = evaluator.final["flags"]
    summary["duration_s"] = time.perf_counter() - started
    summary["device"] = dev.type
    summary["threads"] = torch.get_num_threads()  # torch intra-op threads it ran with
    return summary


# ----------------------------------------------------------------------------- local runs


class FileObserver(NullObserver):
    """Streams metrics to DIR/metrics.csv (name,step,value,seed) and matrices to
    DIR/matrices.jsonl; optional tqdm progress bar."""

    def __init__(self, out_dir: Path, progress: bool) -> None:
        self._csv_file = open(out_dir / "metrics.csv", "w", newline="")
        self._csv = csv.writer(self._csv_file)
        self._csv.writerow(["name", "step", "value", "seed"])
        self._matrices = open(out_dir / "matrices.jsonl", "w")
        self._progress = progress
        self._bar = None

    def on_start(self, total_steps, seeds) -> None:
        if self._progress:
            from tqdm import tqdm

            self._bar = tqdm(total=total_steps, unit="epoch", dynamic_ncols=True)

    def on_metrics(self, records) -> None:
        self._csv.writerows((r.name, r.step, repr(float(r.value)), r.seed) for r in records)
        if self._bar is not None:
            acc = [r.value for r in records if r.name == "test/clean_accuracy"]
            if acc:
                self._bar.set_postfix(test_acc=f"{sum(acc) / len(acc):.3f}")

    def on_matrices(self, records) -> None:
        for r in records:
            self._matrices.write(json.dumps({"name": r.name, "step": r.step, "seed": r.seed,
                                             "values": r.values, "rows": r.row_labels,
                                             "cols": r.col_labels}) + "\n")

    def on_progress(self, step, total) -> None:
        if self._bar is not None:
            self._bar.update(step - self._bar.n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        self._csv_file.close()
        self._matrices.close()


def run_local(spec_path, out_dir, device: str | None = None, progress: bool = True,
              threads: int | None = None) -> dict:
    """`advlab run`: run a spec file locally, writing DIR/spec.json (resolved), DIR/summary.json,
    DIR/metrics.csv (and DIR/matrices.jsonl). Returns the summary. `threads`: torch intra-op
    threads (default: torch's own choice)."""
    if threads:
        torch.set_num_threads(threads)
    spec = parse_spec(Path(spec_path).read_text()).resolve()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "spec.json").write_text(json.dumps(spec.model_dump(mode="json"), indent=2) + "\n")
    observer = FileObserver(out, progress)
    try:
        summary = run_experiment(spec, observer, device=device)
    finally:
        observer.close()
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


if __name__ == "__main__":  # python -m advcore.run spec.json OUT_DIR
    import sys

    print(json.dumps(run_local(sys.argv[1], sys.argv[2]), indent=2)[:2000])

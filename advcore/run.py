"""Run one experiment spec end to end: the function the worker, the CLI and notebooks call.

`run_experiment` resolves the spec, builds each seed's data and the batched learner, trains,
streams MetricRecord / MatrixRecord through the observer and returns the run's
advcore.summary.RunSummary: clean and robust accuracies of the final evaluation (each attack's
own number and the minimum over attacks per threat and radius, with disagreements flagged),
final correlations, masking flags, duration, device and torch threads; with several seeds, per-seed
summaries under `seeds` and their mean on top. The final cosine matrices leave through the
observer (matrix series), never through the summary.

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
from advcore.summary import RunSummary, build_summary
from advcore.train import make_task, train


def run_experiment(spec: ExperimentSpec, observer: Observer | None = None,
                   device: str | None = None) -> RunSummary:
    """Train and evaluate `spec` (resolved here unless resolve() made it); raises
    advcore.observe.Canceled when the observer's should_stop() turns true (polled every epoch).
    `device` overrides spec.device."""
    started = time.perf_counter()
    observer = observer or NullObserver()
    spec = spec.as_resolved()
    dev = pick_device(device if device is not None else spec.device)
    seeds = spec.seed_list
    data = stack_seeds([build_data(spec.data, seed, dev) for seed in seeds])
    if spec.study is not None:  # separation table / feature-attack study (advcore.studies)
        from advcore.studies import run_study

        summary = RunSummary.model_validate(run_study(spec, data, observer, dev))
        return summary.model_copy(update={"duration_s": time.perf_counter() - started,
                                          "device": dev.type,
                                          "threads": torch.get_num_threads()})
    task = make_task(spec, data)
    model = build_learner(spec, data.in_shape, task.n_outputs, seeds, dev)
    observer.on_start(spec.total_steps, seeds)
    evaluator = Evaluator(spec, model, data, task, observer)
    train(spec, model, data, task, observer, evaluator)
    summary = build_summary(evaluator.final, seeds, spec.evaluation.disagreement_gap)
    return summary.model_copy(update={"duration_s": time.perf_counter() - started,
                                      "device": dev.type,
                                      "threads": torch.get_num_threads()})  # intra-op threads


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
              threads: int | None = None) -> RunSummary:
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
    (out / "summary.json").write_text(json.dumps(summary.to_stored(), indent=2) + "\n")
    return summary


if __name__ == "__main__":  # python -m advcore.run spec.json OUT_DIR
    import sys

    print(json.dumps(run_local(sys.argv[1], sys.argv[2]).to_stored(), indent=2)[:2000])

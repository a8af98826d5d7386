"""One evaluation of a batched model: losses, clean / robust accuracies, margins, correlations.

Metric names follow api.md: `{split}/loss`, `{split}/clean_accuracy`,
`test/robust_accuracy/{attack.label}@{radius}` (every attack at every radius, on the first
`n_attack` test points), `fine/{split}/clean_accuracy` for the k-class task of a fine-label run
whose main classifier is the binary read-out, `test/margin_mean|min|median`, `corr/*`,
`weights/*`. The last evaluation's per-seed values are kept in `self.final` for the summary.
"""

from __future__ import annotations

import torch

from advcore.data import Dataset
from advcore.measure import correlation_records, weight_norm_records
from advcore.observe import MetricRecord, Observer
from advcore.spec import robust_metric
from advcore.train import (Task, attack_generator, attack_kwargs, attacked_view, binary_readout,
                           fine_view, margins, per_seed_loss, targets)


class Evaluator:
    def __init__(self, spec, model, data: Dataset, task: Task, observer: Observer) -> None:
        self.spec, self.model, self.data, self.task, self.observer = spec, model, data, task, observer
        self.seeds = list(spec.seed_list)
        self.record = set(spec.evaluation.record)
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
            main_logits = binary_readout(logits, self.task.positive_classes) if self.task.has_readout else logits
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
        out, results = [], []
        splits = ["test", "train"] if self.spec.evaluation.attack_train else ["test"]
        n = self.spec.evaluation.n_attack
        for split in splits:
            x = getattr(self.data, f"x_{split}")[:, :n]
            y_main = getattr(self.data, f"y_{split}")[:, :n]
            y_fine = getattr(self.data, f"y_{split}_fine")
            y_fine = y_fine[:, :n] if y_fine is not None else None
            for i, attack in enumerate(self.spec.evaluation.attacks):
                fn, y = attacked_view(self.model, self.task, attack, y_main, y_fine)
                gen = attack_generator(self.seeds, f"eval/{split}/{i}/{step}", x.device)
                res = self.robust_accuracy(fn, x, y, attack, generator=gen,
                                           **attack_kwargs(attack, self.data))
                acc = res.accuracy.reshape(len(res.radii), -1)  # (radii, S)
                for radius, per_seed in zip(res.radii, acc):
                    out += self._records(robust_metric(split, attack, radius), per_seed, step)
                    if split == "test":
                        results.append((attack.label, float(radius), per_seed.detach().cpu()))
                if split == "test" and res.flags:
                    self.final.setdefault("flags", {})[attack.label] = _plain(res.flags)
        self.final["robust"] = results
        return out

    def __call__(self, step: int) -> None:
        """Evaluate at `step` (epoch); step 0 records the initial state without attacks."""
        self.model.eval()
        records = self._clean(step)
        if step > 0 and self.robust_accuracy is not None:
            records += self._robust(step)
        if "weight_norms" in self.record:
            records += weight_norm_records(self.model, step, self.seeds)
        if "correlations" in self.record or step == self.spec.training.epochs:
            metrics, matrices, raw = correlation_records(self.model, self.data.features, step, self.seeds)
            self.final["raw"] = raw
            if "correlations" in self.record:
                records += metrics
                if matrices:
                    self.observer.on_matrices(matrices)
        if "decoupling" in self.record and self.data.y_test_fine is not None:
            records += self._decoupling(step)
        self.observer.on_metrics(records)
        self.model.train()

    def _decoupling(self, step: int) -> list[MetricRecord]:
        """Class-cosine matrices of advcore.decoupling on the test set (2- vs 10-class study)."""
        from advcore.decoupling import decoupling_records

        metrics, matrices, views = decoupling_records(
            self.model, self.data.x_test, self.data.y_test_fine, self.data.n_classes, step, self.seeds)
        self.observer.on_matrices(matrices)
        self.final["decoupling"] = {k: v for k, v in views.items() if k.endswith("mean_max_cosine")}
        return metrics


def _plain(value):
    """Attack flags as JSON-able values (tensors -> lists / numbers)."""
    if isinstance(value, torch.Tensor):
        return value.item() if value.numel() == 1 else value.detach().cpu().tolist()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value

"""The training loop: standard / adversarial, binary / fine labels, GD / SGD / Adam.

All S seeds train as one computation. The objective is the SUM over seeds of each seed's mean
loss, so each seed's gradient is exactly the gradient of its own run; optimizer updates (SGD,
momentum, Adam, weight decay, the l1 soft-threshold) are elementwise, so batched seeds == separate runs. Minibatch
order comes from a per-seed generator for the same reason.

Tasks (`make_task`): a binary data set with `labels: binary` trains a one-logit head with the
logistic loss. `labels: fine` (or data whose labels are classes: patch, images without a binary
map) trains one output per class with cross-entropy; when the data has a J+ split, the binary
read-out (`evaluation.readout`: sum_{J+} F_j - sum_{J-} F_j, or the side of the argmax class) is
the main classifier and the k-class task is reported with the `fine/` prefix.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from advcore.cost import FLOAT, AttackContext, Factor, Ledger, Term, seeds_factor, term
from advcore.data import Dataset
from advcore.device import derive_seed, generator
from advcore.observe import Canceled, Observer
from advcore.schedule import evaluation_plan


@dataclass(frozen=True)
class Task:
    n_outputs: int  # 1: binary head; else one output per class
    positive_classes: tuple[int, ...] | None  # J+ when a binary read-out exists
    readout: str = "sum"  # how the binary read-out reads the class logits (binary_readout)

    @property
    def binary_head(self) -> bool:
        return self.n_outputs == 1

    @property
    def has_readout(self) -> bool:
        return not self.binary_head and self.positive_classes is not None


def make_task(spec, data: Dataset) -> Task:
    fine = spec.training.labels == "fine" or not data.binary
    if fine and data.n_classes is None:
        raise ValueError(f"data kind {spec.data.kind!r} has no fine labels")
    if not fine:
        return Task(1, None)
    positive = tuple(data.positive_classes) if data.binary and data.positive_classes else None
    return Task(data.n_classes, positive, spec.evaluation.readout)


# ----------------------------------------------------------------------------- views


def binary_readout(logits: torch.Tensor, positive_classes, readout: str = "sum") -> torch.Tensor:
    """(..., C) class logits -> (...) one binary logit g, positive means the J+ side.

    sum: sum_{J+} z_j - sum_{J-} z_j. argmax: max_{J+} z_j - max_{J-} z_j, whose sign is the
    side of the predicted class; y * g is then the argmax read-out's margin
    max_{own} z_j - max_{opposite} z_t, the quantity its attacks lower (spec: evaluation.readout)."""
    positive = torch.zeros(logits.shape[-1], device=logits.device, dtype=torch.bool)
    positive[list(positive_classes)] = True
    if readout == "argmax":
        low = torch.finfo(logits.dtype).min
        return logits.masked_fill(~positive, low).amax(-1) - logits.masked_fill(positive, low).amax(-1)
    sign = torch.where(positive, 1.0, -1.0).to(logits.dtype)
    return logits @ sign


def readout_model(model, positive_classes, readout: str = "sum") -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda x: binary_readout(model(x), positive_classes, readout)


def main_view(model, task: Task, y: torch.Tensor, readout: str | None = None
              ) -> tuple[Callable, torch.Tensor]:
    """(callable, labels) for the main task: binary (head or read-out) or k-class. `readout`
    (sum / argmax) overrides the task's read-out."""
    if task.has_readout:
        return readout_model(model, task.positive_classes, readout or task.readout), y
    return model, y


def fine_view(model, task: Task, y_fine: torch.Tensor | None):
    """(callable, labels) for the k-class task reported under `fine/`, or None."""
    if not task.has_readout or y_fine is None:
        return None
    return model, y_fine


def targets(data: Dataset, task: Task, split: str) -> torch.Tensor:
    """The labels the objective is trained against on `split` ('train' / 'test')."""
    y, fine = getattr(data, f"y_{split}"), getattr(data, f"y_{split}_fine")
    if task.binary_head:
        return y
    return fine if fine is not None else y


def per_seed_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(S,) mean loss of each seed: logistic for a binary head, cross-entropy otherwise."""
    if logits.shape == y.shape:
        return F.softplus(-y * logits).flatten(1).mean(1)
    ce = F.cross_entropy(logits.flatten(0, -2), y.flatten(), reduction="none")
    return ce.reshape(y.shape).flatten(1).mean(1)


def margins(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-example margin (S, N): y*f for a binary head, z_y - max_{j!=y} z_j otherwise."""
    if logits.shape == y.shape:
        return y * logits
    z_y = logits.gather(-1, y.unsqueeze(-1)).squeeze(-1)
    others = logits.scatter(-1, y.unsqueeze(-1), float("-inf"))
    return z_y - others.amax(-1)


# ----------------------------------------------------------------------------- attacks


def attacked_readout(attack, task: Task | None) -> str | None:
    """The binary read-out an attack works on (sum / argmax), None when it attacks a binary
    head or the k-class task."""
    if task is None or not task.has_readout or attack.readout == "fine":
        return None
    return task.readout if attack.readout == "binary" else attack.readout


def attacked_readout_of(spec, data_cost, attack) -> str | None:
    """attacked_readout from a spec and its advcore.cost.DataCost (no data built)."""
    from advcore.cost import n_outputs

    fine = n_outputs(spec, data_cost) > 1
    task = Task(2, (0,), spec.evaluation.readout) if fine and data_cost.has_readout else None
    return attacked_readout(attack, task)


def attack_kwargs(attack, data: Dataset, task: Task | None = None) -> dict:
    """subspace_basis / direction for an AttackSpec, with the seed dim S kept in front:
    basis (S, K, *F) (explicit lists are shared: (K, *F)); direction (S, *F). With clusters,
    the start directions of apgd / autoattack and the `data` directions attack; the cluster
    pairs u_t - u_own when the attacked read-out is argmax (or for the directions attack)."""
    out: dict = {"feature_ndim": data.feature_ndim}
    if isinstance(attack.subspace, str):
        if attack.subspace not in data.features:
            raise ValueError(f"subspace {attack.subspace!r} needs data with that feature set")
        out["subspace_basis"] = data.features[attack.subspace]
    elif attack.subspace is not None:
        basis = torch.tensor(attack.subspace, dtype=data.x_train.dtype, device=data.x_train.device)
        out["subspace_basis"] = basis.reshape(len(attack.subspace), *data.in_shape)
    if data.attack_direction is not None:
        out["direction"] = data.attack_direction
    uses_starts = attack.kind in ("apgd", "autoattack") or (
        attack.kind == "feature_direction" and attack.directions == "data")
    if uses_starts and "cluster" in data.features and data.positive_classes:
        # start directions of APGD (advcore.attacks.starts): cluster means and their sides
        clusters = data.features["cluster"]  # (S, k, *F)
        k = clusters.shape[-data.feature_ndim - 1]
        labels = -torch.ones(k, dtype=clusters.dtype, device=clusters.device)
        labels[list(data.positive_classes)] = 1.0
        out["clusters"], out["cluster_labels"] = clusters, labels
        if attacked_readout(attack, task) == "argmax" or attack.kind == "feature_direction":
            out["cluster_pairs"] = True
    return out


def attack_generator(seeds: list[int], purpose: str, device) -> list[torch.Generator]:
    """One generator per seed on the data's device (advcore.attacks draws seed s's slice from
    generator s), so random starts of S batched seeds equal those of S separate runs."""
    return [torch.Generator(device=device).manual_seed(derive_seed(seed, purpose)) for seed in seeds]


def attacked_view(model, task: Task, attack, y_main, y_fine):
    """The model reading and labels an attack works on (`readout: fine` -> k-class loss;
    sum / argmax -> that binary read-out; binary -> the task's)."""
    if attack.readout == "fine" and not task.binary_head:
        return model, (y_fine if y_fine is not None else y_main)
    return main_view(model, task, y_main, attacked_readout(attack, task))


# ----------------------------------------------------------------------------- loop


def make_optimizer(params, opt) -> torch.optim.Optimizer:
    if opt.kind == "adam":
        return torch.optim.Adam(params, lr=opt.lr, weight_decay=opt.weight_decay)
    return torch.optim.SGD(params, lr=opt.lr, momentum=opt.momentum, weight_decay=opt.weight_decay)


@torch.no_grad()
def l1_prox(params, opt) -> None:
    """The proximal step of the l1 penalty opt.l1 * sum|w|: w <- sign(w) max(|w| - lr*l1, 0)."""
    if opt.l1 > 0:
        threshold = opt.lr * opt.l1
        for p in params:
            p.copy_(p.sign() * (p.abs() - threshold).clamp_(min=0.0))


def _gather(t: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """t (S, N, ...) at per-seed indices idx (S, B) -> (S, B, ...)."""
    return t[torch.arange(t.shape[0], device=t.device)[:, None], idx]


def train(spec, model, data: Dataset, task: Task, observer: Observer,
          evaluate: Callable[[int], None]) -> None:
    """Run spec.training on `model`; calls evaluate(0) first and evaluate(epoch) on schedule,
    reports progress every epoch and raises Canceled when the observer asks to stop."""
    t = spec.training
    seeds = list(spec.seed_list)
    optimizer = make_optimizer(model.parameters(), t.optimizer)
    constrain = getattr(model, "constrain_", None)  # a learner's projection after each step
    x, y = data.x_train, targets(data, task, "train")  # (S, N, *F), (S, N)
    y_main, y_fine = data.y_train, data.y_train_fine
    n = x.shape[1]
    full_batch = t.optimizer.kind == "gd" or t.batch_size is None or t.batch_size >= n
    batch = n if full_batch else t.batch_size
    batch_gens = [generator(s, "batches") for s in seeds]
    attack_gen = attack_generator(seeds, "adversary", x.device) if t.mode == "adversarial" else None
    adv_kwargs = attack_kwargs(t.adversary, data, task) if t.mode == "adversarial" else {}
    scheduled = evaluation_plan(spec.evaluation, t.epochs).evaluated
    evaluate(0)
    for epoch in range(1, t.epochs + 1):
        if full_batch:
            order = None
        else:
            order = torch.stack([torch.randperm(n, generator=g) for g in batch_gens]).to(x.device)  # (S, N)
        for start in range(0, n, batch):
            if order is None:
                xb, yb, ymb, yfb = x, y, y_main, y_fine
            else:
                idx = order[:, start:start + batch]  # (S, B)
                xb, yb, ymb = _gather(x, idx), _gather(y, idx), _gather(y_main, idx)
                yfb = _gather(y_fine, idx) if y_fine is not None else None
            if t.mode == "adversarial":
                from advcore.attacks import perturb

                fn, y_att = attacked_view(model, task, t.adversary, ymb, yfb)
                xb = perturb(fn, xb, y_att, t.adversary, t.adversary.radii[0],
                             generator=attack_gen, **adv_kwargs).detach()
            optimizer.zero_grad(set_to_none=True)
            loss = per_seed_loss(model(xb), yb).sum()  # sum over seeds: independent gradients
            loss.backward()
            optimizer.step()
            l1_prox(model.parameters(), t.optimizer)
            if constrain is not None:
                constrain()
        if not math.isfinite(loss.item()):  # once per epoch: no device sync per step
            raise FloatingPointError(f"training diverged at epoch {epoch} (loss {loss.item()})")
        if epoch in scheduled:
            evaluate(epoch)
        observer.on_progress(epoch, t.epochs)
        if observer.should_stop():
            raise Canceled(f"canceled at epoch {epoch}")


# ----------------------------------------------------------------------------- cost


def batching(spec, n: int) -> tuple[int, int]:
    """(batch size, batches per epoch) exactly as `train` splits n training examples."""
    t = spec.training
    full_batch = t.optimizer.kind == "gd" or t.batch_size is None or t.batch_size >= n
    batch = n if full_batch else t.batch_size
    return batch, -(-n // batch)


def training_cost(spec, data, model, base: list[Term], *, prefix: str = "") -> Ledger:
    """advcore.cost.Ledger of `train` (without its evaluations): every epoch passes all n_train
    examples of every seed forward and backward (an adversarial step first perturbs its batch);
    memory is the persistent `base` plus one step's batch and activations."""
    t, S = spec.training, len(spec.seed_list)
    n, D = data.n_train, data.in_elements
    batch, per_epoch = batching(spec, n)
    factors = (Factor(("training", "epochs"), t.epochs, 300), data.samples("train"),
               seeds_factor(spec), *model.factors, *data.size)
    steps = Factor(("training", "batch_size"), per_epoch, 400)
    ledger = Ledger()
    ledger.flops.append(term(f"{prefix}training", t.epochs * S * n * model.train_step,
                             factors, steps))
    copied = 0 if batch == n else S * batch * (D * FLOAT + data.label_bytes())
    batch_terms = [term(f"{prefix}training batch", copied + S * batch * model.backward_bytes,
                        Factor(("training", "batch_size"), batch, 256), seeds_factor(spec),
                        *model.factors, *data.size),
                   # a weight gradient formed in its product's layout, then copied into .grad
                   term(f"{prefix}weight gradient copy", S * model.grad_copy * FLOAT,
                        seeds_factor(spec), model.factors)]
    if t.mode == "adversarial":
        from advcore.attacks import attack_cost, perturb_cost

        ctx = AttackContext(model, data, ("training", "adversary"),
                            readout=attacked_readout_of(spec, data, t.adversary))
        flops, working = perturb_cost(t.adversary, ctx, S * batch)
        adv = attack_cost(t.adversary, ctx)
        ledger.flops.append(term(f"{prefix}training.adversary", flops * per_epoch * t.epochs,
                                 factors, steps, adv.factors))
        ledger.phase(f"{prefix}adversarial perturbation", base,
                     term(f"{prefix}training.adversary", working + copied,
                          Factor(("training", "batch_size"), batch, 256), adv.factors,
                          seeds_factor(spec), *model.factors, *data.size))
        batch_terms.append(term(f"{prefix}adversarial batch", S * batch * D * FLOAT,
                                Factor(("training", "batch_size"), batch, 256)))
    ledger.phase(f"{prefix}training step", base, batch_terms)
    return ledger

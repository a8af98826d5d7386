"""Measuring what a run really costs on CPU, to hold advcore.cost's estimates against it.

- FLOPs: torch.utils.flop_counter.FlopCounterMode's counting around the run (matrix products and
  convolutions, 2 per multiply-add). It does not see torch.cdist's kernels, so the two
  distance ops are given the same convention the estimate uses (2 n m D: the l2 matrix
  product's count; subtract + max-abs for l_inf).
- Peak memory: torch's CPU allocations from the profiler's allocation events (profile_memory:
  every c10 CPU allocator alloc/free with its size, in time order; the running sum's maximum
  is the peak of live tensor bytes, workspaces inside kernels included), plus tracemalloc's
  peak over the data build (file contents and numpy arrays, which torch's allocator never
  sees). tracemalloc alone would miss every torch tensor (torch allocates outside Python's
  allocator); RSS is dominated by the interpreter and torch's libraries (hundreds of MB),
  keeps freed pages, and its peak cannot be reset between runs.
- Seconds: a second, uninstrumented run (`seconds=True`).
Runs single-threaded so the numbers do not depend on the load of a shared machine.
"""

from __future__ import annotations

import contextlib
import time
import tracemalloc
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode, _FlopCounterMode

from advcore.run import run_experiment
from devtools.image_files import write_fake_image_files


@dataclass
class Measured:
    flops: float
    peak_bytes: float  # torch's peak + the data build's host peak (an upper bound of both at once)
    torch_peak: float
    host_peak: float
    seconds: float | None = None


def _distance_flops(x1_shape, x2_shape, *args, **kwargs) -> int:
    *_, n, D = x1_shape
    m = x2_shape[-2]
    return 2 * n * m * D


CUSTOM_FLOPS = {torch.ops.aten._cdist_forward: _distance_flops,
                torch.ops.aten._euclidean_dist: _distance_flops}


class GlobalFlopCounter(FlopCounterMode):
    """FlopCounterMode's counting (its dispatch mode and formulas) without its per-module
    tracker, whose backward hooks break torch.autograd.grad(..., inputs=leaf), the call every
    attack makes."""

    def __enter__(self):
        self.flop_counts.clear()
        self.mode = _FlopCounterMode(self)
        self.mode.__enter__()
        return self

    def __exit__(self, *args):
        out = self.mode.__exit__(*args)
        self.mode = None
        return out


def _alloc_peak(prof) -> float:
    """Maximum of the running sum of the profiler's CPU allocation events."""
    from torch._C._profiler import _EventType

    events = []
    stack = list(prof.profiler.kineto_results.experimental_event_tree())
    while stack:
        e = stack.pop()
        stack.extend(e.children)
        if e.tag == _EventType.Allocation and e.extra_fields.device.type == "cpu":
            events.append((e.start_time_ns, e.extra_fields.alloc_size))
    current = peak = 0
    for _, size in sorted(events):
        current += size
        peak = max(peak, current)
    return float(peak)


@contextlib.contextmanager
def single_thread():
    """torch on one thread inside, restored after: numbers that do not depend on the machine's
    load, and in-process training that does not oversubscribe a shared machine's cores (torch's
    default pool turned a 4 s run into 19 s on two cores)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def clear_caches() -> None:
    from advcore.data import images

    images._from_disk.cache_clear()


def host_peak(spec) -> float:
    """tracemalloc's peak while every seed's data set is built (caches cleared): the file
    contents, numpy arrays and Python objects of the build, outside torch's allocator."""
    from advcore.data import _load_builders, build_data

    _load_builders()
    resolved = spec.resolve()
    if resolved.data.kind == "image" and resolved.data.dataset == "digits":
        import sklearn.datasets  # noqa: F401  (imports are not data)
    clear_caches()
    tracemalloc.start()
    try:
        datasets = [build_data(resolved.data, seed) for seed in resolved.seed_list]
        peak = float(tracemalloc.get_traced_memory()[1])
    finally:
        tracemalloc.stop()
    del datasets
    return peak


def measure(spec, seconds: bool = False) -> Measured:
    """Run `spec` on CPU under the FLOP counter and the memory profiler, measure the host
    memory of its data build apart (tracemalloc slows everything it watches), and once more,
    bare, for the wall time when `seconds`."""
    from torch.profiler import ProfilerActivity, profile

    with single_thread():
        host = host_peak(spec)
        clear_caches()
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            with GlobalFlopCounter(display=False, custom_mapping=CUSTOM_FLOPS) as counter:
                run_experiment(spec, device="cpu")
        torch_peak = _alloc_peak(prof)
        out = Measured(float(counter.get_total_flops()), torch_peak + host, torch_peak, host)
        if seconds:
            clear_caches()
            start = time.perf_counter()
            run_experiment(spec, device="cpu")
            out.seconds = time.perf_counter() - start
    return out


# ----------------------------------------------------------------------------- shrunk examples

# Every example at a size a shared CPU measures in about a second, with the same kinds and
# schedule shape (evaluations, attacks, radii, splits, seeds batched): the estimate's form is
# what is tested, at sizes where its terms are measurable. `files` fakes a data set's standard
# files at (train, test) images, the estimate told those sizes (IMAGE_SETS).
# Adversarial examples train and are attacked at radii where no point breaks (TINY_RADIUS:
# the training radius, and each evaluation attack's radii scaled to 1e-3, 2e-3, ... with their
# count kept): every attack then runs every step of every start, the case the estimate prices
# (evaluation stops early on broken points); training costs the same at any radius.
TINY_RADIUS = {"training.adversary.radii": [1e-3], "tiny_attack_radii": True}
SHRUNK: dict[str, dict] = {
    "quickstart": {"training.epochs": 10},  # 60 -> 10 epochs
    "feature_averaging_binary": {  # epochs / 20, d / 5, n / 5, PGD steps / 5
        "training.epochs": 10, "data.d": 100, "data.n_train": 200, "data.n_test": 100,
        "evaluation.n_attack": 100, "evaluation.attacks.*.steps": 10},
    "feature_averaging_fine": {
        "training.epochs": 10, "data.d": 100, "data.n_train": 200, "data.n_test": 100,
        "evaluation.n_attack": 100, "evaluation.attacks.*.steps": 10},
    "digits_binary": {"training.epochs": 10, "evaluation.n_attack": 100},  # epochs / 30
    "digits_fine": {"training.epochs": 10, "evaluation.n_attack": 100},
    "digits_2class": {  # epochs / 60, PGD steps / 4
        "training.epochs": 5, "evaluation.every": 5, "evaluation.attacks.*.steps": 5},
    "digits_10class": {
        "training.epochs": 5, "evaluation.every": 5, "evaluation.attacks.*.steps": 5},
    "digits_width_16": {  # epochs / 10, PGD steps / 3-4
        "training.epochs": 10, "data.n_train": 200, "training.adversary.steps": 3,
        "evaluation.attacks.*.steps": 5, **TINY_RADIUS},
    "digits_width_128": {
        "training.epochs": 10, "data.n_train": 200, "training.adversary.steps": 3,
        "evaluation.attacks.*.steps": 5, **TINY_RADIUS},
    "digits_width_1024": {  # also epochs / 50
        "training.epochs": 2, "evaluation.every": 2, "data.n_train": 200,
        "training.adversary.steps": 3,
        "evaluation.attacks.*.steps": 5, **TINY_RADIUS},
    "separated_width_16": {  # epochs / 15, PGD steps / 3-4
        "training.epochs": 10, "training.adversary.steps": 3, "evaluation.attacks.*.steps": 5,
        **TINY_RADIUS},
    "separated_width_256": {
        "training.epochs": 10, "training.adversary.steps": 3, "evaluation.attacks.*.steps": 5,
        **TINY_RADIUS},
    "separated_width_2048": {  # also epochs / 75
        "training.epochs": 2, "evaluation.every": 2, "training.adversary.steps": 3,
        "evaluation.attacks.*.steps": 5, **TINY_RADIUS},
    "patch_standard": {  # epochs / 30, n / 5, n_attack / 3, PGD steps / 4
        "training.epochs": 2, "data.n_train": 200, "data.n_test": 100,
        "evaluation.n_attack": 100, "evaluation.attacks.*.steps": 5},
    "patch_adversarial": {
        "training.epochs": 2, "data.n_train": 200, "data.n_test": 100,
        "evaluation.n_attack": 100, "evaluation.attacks.*.steps": 5,
        "training.adversary.steps": 2, **TINY_RADIUS},
    "digits_separation": {},
    "digits_feature_attacks": {  # epochs / 50, seeds 5 -> 2, reconstruction / 40, PGD / 10
        "seeds": [0, 1], "study.pairs": [[3, 8], [8, 3]], "study.attack.radii": [0.5, 1.0], "training.epochs": 2, "evaluation.every": 2,
        "study.adversary.steps": 2, "study.attack.steps": 3,
        "study.reconstruction.steps": 5, "study.reconstruction.n_per_class": 3},
    "mnist_separation": {"files": (600, 200)},  # 1/100 of MNIST's images
    "fashion_mnist_separation": {"files": (600, 200)},
    "cifar10_separation": {"files": (300, 100)},  # 1/150 of CIFAR-10's images
    "cifar10_resnet18_2class": {  # 1/1000 of the images, width / 16, one block per stage
        "files": (60, 30), "learner.width": 4, "learner.blocks": [1, 1, 1, 1],
        "training.epochs": 2, "evaluation.every": 2, "training.batch_size": 30,
        "evaluation.n_attack": 8, "evaluation.attacks.*.steps": 3},
    "cifar10_resnet18_10class": {
        "files": (60, 30), "learner.width": 4, "learner.blocks": [1, 1, 1, 1],
        "training.epochs": 2, "evaluation.every": 2, "training.batch_size": 30,
        "evaluation.n_attack": 8, "evaluation.attacks.*.steps": 3},
    "cifar10_resnet18_feature_attacks": {  # width / 32, reconstruction / 300, 2 seeds, 2 pairs
        "files": (60, 20), "seeds": [0, 1], "learner.width": 2, "learner.blocks": [1, 1, 1, 1],
        "study.pairs": [[3, 5], [5, 3]], "study.attack.radii": [0.5],
        "training.epochs": 1, "evaluation.every": 1, "training.batch_size": 30,
        "study.adversary.steps": 2, "study.attack.steps": 3,
        "study.reconstruction.steps": 3, "study.reconstruction.n_per_class": 2,
        "study.reconstruction.n_directions": 2},
}


def _set(node, parts: list[str], value) -> None:
    head, rest = parts[0], parts[1:]
    keys = range(len(node)) if head == "*" else [int(head) if head.isdigit() else head]
    for key in keys:
        if rest:
            _set(node[key], rest, value)
        else:
            node[key] = value


def shrunk(name: str, body: dict) -> tuple[dict, tuple[int, int] | None]:
    """(the example's body at its SHRUNK size, fake (train, test) image counts or None)."""
    import copy

    body = copy.deepcopy(body)
    files = None
    for path, value in SHRUNK[name].items():
        if path == "files":
            files = value
        elif path == "tiny_attack_radii":
            for attack in body.get("evaluation", {}).get("attacks", []):
                attack["radii"] = [1e-3 * (i + 1) for i in range(len(attack["radii"]))]
        else:
            _set(body, path.split("."), value)
    return body, files


@contextlib.contextmanager
def fake_image_files(dataset: str, counts: tuple[int, int], root: Path):
    """ADVLAB_DATASET_DIR -> root with fake files of `dataset`; IMAGE_SETS says their sizes."""
    import os

    from advcore.spec import IMAGE_SETS

    write_fake_image_files(root, dataset, *counts)
    saved_env, saved_size = os.environ.get("ADVLAB_DATASET_DIR"), IMAGE_SETS[dataset]
    os.environ["ADVLAB_DATASET_DIR"] = str(root)
    IMAGE_SETS[dataset] = (counts[0], counts[1], saved_size[2])
    clear_caches()
    try:
        yield
    finally:
        IMAGE_SETS[dataset] = saved_size
        if saved_env is None:
            os.environ.pop("ADVLAB_DATASET_DIR", None)
        else:
            os.environ["ADVLAB_DATASET_DIR"] = saved_env
        clear_caches()

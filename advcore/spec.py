"""The experiment spec: one typed place for every knob, shared by the service and local runs.

Every model forbids unknown fields, so a typo is a 422 naming its path rather than a silently
ignored setting. `resolve()` fills defaults that depend on other fields and returns the
canonical form whose hash identifies the science (name and tags are excluded from the hash).
"""

from __future__ import annotations

import hashlib
import json
import math
import weakref
from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

SPEC_VERSION = 1

PositiveInt = Annotated[int, Field(ge=1)]
NonNegFloat = Annotated[float, Field(ge=0, allow_inf_nan=False)]
PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]

# ----------------------------------------------------------------------------- hard bounds
# Every field that scales a job's cost has a hard upper bound here (a 422 naming its path),
# generous for the papers' sizes on a GPU (d = 3072, all of CIFAR-10 with several seeds,
# ResNet-18, AutoAttack-sized attacks); the configurable per-server limits on memory, compute
# and storage apply on top of advcore.cost.estimate.
MAX_DIM = 1_000_000  # input dimension d (a 3x224x224 image is 150528)
MAX_CLASSES = 1000  # clusters / classes k (ImageNet's count)
MAX_SAMPLES = 10_000_000  # n_train, n_test, n_attack each
MAX_DATA_ELEMENTS = 2**31  # seeds x (n_train + n_test) x input size: 8 GiB of float32
MAX_PATCHES = 4096  # P
MAX_PATCH_ELEMENTS = 2**20  # P x d (CIFAR-10 as 8x8 patches: 3072)
MAX_WIDTH = 65536  # neurons of one layer (two-layer width, MLP widths, CNN hidden)
MAX_DEPTH = 64  # MLP hidden layers
MAX_CHANNELS = 4096  # CNN channels of one stage
MAX_CONV_STAGES = 16  # CNN stages
MAX_RESNET_WIDTH = 1024  # first-stage channels (ResNet-18: 64; WRN-28-10's widest: 640)
MAX_RESNET_CHANNELS = 8192  # channels of the last stage, width * 2^(stages-1)
MAX_BLOCKS = 64  # BasicBlocks per stage (ResNet-18: 2)
MAX_STEPS = 10_000  # attack steps (AutoAttack: 100), reconstruction steps (Ilyas et al.: 1000)
MAX_RESTARTS = 100
MAX_RADII = 64
MAX_ATTACKS = 32  # attacks per evaluation
MAX_ATTACK_PASSES = 2**20  # per attacked point: sum over attacks of (steps + 1) x restarts x radii
MAX_EPOCHS = 1_000_000
MAX_OPTIMIZER_STEPS = 10_000_000  # epochs x batches per epoch (CIFAR-10, 200 epochs: 78200)
MAX_EVALUATIONS = 100_000  # epochs / every (and / record_every, / attack_every)
MAX_ATTACK_EPOCHS = 10_000  # listed epochs of evaluation.attack_every
MAX_DIRECTIONS = 4096  # subspace directions, reconstruction basis size
MAX_PER_CLASS = 10_000  # reconstructed images per class (CIFAR-10 has 5000)
MAX_PAIRS = 90  # (source, target) class pairs of 10 classes


def Bounded(limit: int):  # noqa: N802  (a type)
    return Annotated[int, Field(ge=1, le=limit)]


def too_large(model: str, loc: tuple, value: int, limit: int, what: str) -> ValidationError:
    """A validation error AT `loc` (pydantic keeps it under the enclosing fields' path), for a
    product of fields over its hard bound; raise it from a model validator."""
    error = PydanticCustomError("too_large", "{what} = {value} exceeds the hard bound {limit}",
                                {"what": what, "value": value, "limit": limit})
    return ValidationError.from_exception_data(
        model, [InitErrorDetails(type=error, loc=loc, input=value)])


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


# ----------------------------------------------------------------------------- data models


class MultiClusterData(_Model):
    """k orthogonal cluster means (norm `mean_norm`, default sqrt(d)) plus N(0, sigma^2 I) noise."""

    kind: Literal["multi_cluster"] = "multi_cluster"
    d: Bounded(MAX_DIM) = 200  # input dimension
    k: Annotated[int, Field(ge=2, le=MAX_CLASSES)] = 10  # number of clusters (must be <= d)
    sigma: NonNegFloat = 1.0  # noise standard deviation per coordinate
    n_train: Bounded(MAX_SAMPLES) = 2000
    n_test: Bounded(MAX_SAMPLES) = 1000
    positive_clusters: Annotated[list[Annotated[int, Field(ge=0)]], Field(
        max_length=MAX_CLASSES)] | None = None  # J+; default first k//2
    mean_norm: PositiveFloat | None = None  # ||mu_j||; default sqrt(d)
    means: Literal["orthonormal_basis", "random_orthogonal"] = "random_orthogonal"

    @model_validator(mode="after")
    def _check(self) -> "MultiClusterData":
        if self.k > self.d:
            raise ValueError("k must be <= d (the cluster means are mutually orthogonal)")
        if self.positive_clusters is not None:
            bad = [j for j in self.positive_clusters if j >= self.k]
            if bad:
                raise ValueError(f"positive_clusters {bad} out of range [0, k={self.k})")
            if len(set(self.positive_clusters)) in (0, self.k):
                raise ValueError("positive_clusters must be a non-empty proper subset of clusters")
        return self


Range = Annotated[list[NonNegFloat], Field(min_length=2, max_length=2)]


class PatchData(_Model):
    """k classes; P patches of dimension d; robust feature u_y on `n_robust` patches (strength alpha),
    non-robust feature v_y on the other P - n_robust patches (strength beta), noise sigma_n.

    Defaults are the calibrated l_inf setting (examples/patch_*.json): under a global l2 threat
    standard training cannot both prefer v and leave u unbreakable (science.md calibration notes)."""

    kind: Literal["patch"] = "patch"
    k: Annotated[int, Field(ge=2, le=MAX_CLASSES)] = 4
    d: Bounded(MAX_PATCH_ELEMENTS) = 64  # patch dimension; needs 2k <= d (u's and v's orthonormal)
    patches: Annotated[int, Field(ge=2, le=MAX_PATCHES)] = 48  # P (calibrated: see examples/patch_standard.json)
    n_robust: PositiveInt = 1  # |J_R|
    alpha: NonNegFloat | Range = 1.0  # robust strength (value or [lo, hi] uniform)
    beta: NonNegFloat | Range = 0.4  # non-robust strength (value or [lo, hi] uniform)
    sigma_n: NonNegFloat = 0.02
    n_train: Bounded(MAX_SAMPLES) = 1000
    n_test: Bounded(MAX_SAMPLES) = 500
    # random_orthogonal: all 2k features dense random orthonormal directions; sparse_robust:
    # u_y = e_y (axis-aligned) and the v's dense in the remaining coordinates, so an l_inf
    # attacker moves along a v with leverage ~eps*sqrt(d) but along a u only with eps
    features: Literal["random_orthogonal", "sparse_robust"] = "sparse_robust"

    @model_validator(mode="after")
    def _check(self) -> "PatchData":
        if 2 * self.k > self.d:
            raise ValueError("need 2k <= d: the robust and non-robust features are orthonormal")
        if self.n_robust >= self.patches:
            raise ValueError("n_robust must be < patches (at least one non-robust patch)")
        if self.patches * self.d > MAX_PATCH_ELEMENTS:
            raise too_large("PatchData", ("patches",), self.patches * self.d, MAX_PATCH_ELEMENTS,
                            "patches x d")
        return self


class SeparatedData(_Model):
    """Binary data in [0,1]^d whose classes are at distance >= 2*eps (in `norm`)."""

    kind: Literal["separated"] = "separated"
    d: Bounded(MAX_DIM) = 20
    n_train: Bounded(MAX_SAMPLES) = 500
    n_test: Bounded(MAX_SAMPLES) = 500
    eps: PositiveFloat = 0.05  # half the guaranteed class separation
    norm: Literal["l2", "linf"] = "linf"
    variant: Literal["linear", "manifold"] = "linear"
    manifold_dim: PositiveInt = 2  # for variant="manifold"

    @model_validator(mode="after")
    def _check(self) -> "SeparatedData":
        if self.variant == "manifold" and self.manifold_dim > self.d:
            raise ValueError("manifold_dim must be <= d")
        return self


# image data sets: (training images, test images, (C, H, W)) of the standard files
IMAGE_SETS = {"digits": (1347, 450, (1, 8, 8)),  # scikit-learn's 1797 digits, 450 held out
              "mnist": (60000, 10000, (1, 28, 28)),
              "fashion_mnist": (60000, 10000, (1, 28, 28)),
              "cifar10": (50000, 10000, (3, 32, 32))}


class ImageData(_Model):
    """A real image data set: `digits` is bundled; others are read from ADVLAB_DATASET_DIR."""

    kind: Literal["image"] = "image"
    dataset: Literal["digits", "mnist", "fashion_mnist", "cifar10"] = "digits"
    classes: Annotated[list[Annotated[int, Field(ge=0, le=9)]],
                       Field(max_length=10)] | None = None  # class subset; None = all
    # even_odd; first_half (of the kept classes); animals_vehicles (CIFAR-10: classes 2-7
    # positive, 0 1 8 9 negative); [[positive...], [negative...]]; None = the k-class task
    binary: Literal["even_odd", "first_half", "animals_vehicles"] | Annotated[
        list[Annotated[list[Annotated[int, Field(ge=0, le=9)]], Field(min_length=1, max_length=10)]],
        Field(min_length=2, max_length=2)] | None = "even_odd"
    n_train: Bounded(MAX_SAMPLES) | None = None  # subsample (seeded); None = all
    n_test: Bounded(MAX_SAMPLES) | None = None

    @model_validator(mode="after")
    def _check(self) -> "ImageData":
        if isinstance(self.binary, list) and set(self.binary[0]) & set(self.binary[1]):
            raise ValueError("binary: a class cannot be both positive and negative")
        return self


DataSpec = Annotated[
    Union[MultiClusterData, PatchData, SeparatedData, ImageData], Field(discriminator="kind")
]

# ----------------------------------------------------------------------------- learners


class TwoLayerReLU(_Model):
    """f(x) = sum_r a_r ReLU(<w_r, x> + b_r); a_r = +-1/m fixed unless train_second_layer."""

    kind: Literal["two_layer_relu"] = "two_layer_relu"
    width: Bounded(MAX_WIDTH) = 64  # m, total neurons (fine labels: per output, see advcore.learners)
    # w ~ N(0, I/d) * init_scale. 0.1 is the small-initialisation regime the feature-averaging
    # theory assumes: the learned directions then dominate the random init, so the neurons
    # average (binary labels) or decouple (fine labels). At 1.0 a fine-label net (d=600, k=12)
    # stays near its random init (cosines 0.35-0.5) and looks non-robust for the wrong reason.
    init_scale: NonNegFloat = 0.1
    bias: bool = True  # b ~ N(0, 1/d^2)
    train_second_layer: bool = False


class PatchCNN(_Model):
    """F_i(X) = sum_r sum_p sReLU(<w_{i,r}, x_p>), smoothed ReLU with exponent q and knee rho."""

    kind: Literal["patch_cnn"] = "patch_cnn"
    width: Bounded(MAX_CHANNELS) = 8  # m neurons per class
    q: Annotated[float, Field(ge=2)] = 3.0
    rho: PositiveFloat = 0.1
    init_scale: NonNegFloat = 0.1  # w ~ N(0, I/d) * init_scale
    # after every optimizer step each filter w_{i,r} is projected onto the l1 ball of this
    # radius (None: unconstrained). An l_inf attacker moves <w, x_p> by eps * ||w||_1 on EVERY
    # patch, so eps * max_filter_l1 below the knee rho caps the spread attack (science.md §B).
    max_filter_l1: PositiveFloat | None = None


class MLP(_Model):
    kind: Literal["mlp"] = "mlp"
    widths: Annotated[list[Bounded(MAX_WIDTH)], Field(max_length=MAX_DEPTH)] = Field(
        default_factory=lambda: [128])
    init_scale: NonNegFloat = 1.0


class CNN(_Model):
    kind: Literal["cnn"] = "cnn"
    channels: Annotated[list[Bounded(MAX_CHANNELS)],
                        Field(min_length=1, max_length=MAX_CONV_STAGES)] = Field(
        default_factory=lambda: [16, 32])
    hidden: Bounded(MAX_WIDTH) = 64


class ResNet18(_Model):
    """ResNet-18-style (BasicBlocks, BatchNorm per seed) for GPU runs on CIFAR-10; tiny
    `width` / `blocks` make it CPU-testable. Seeds are batched as grouped convolutions."""

    kind: Literal["resnet18"] = "resnet18"
    width: Bounded(MAX_RESNET_WIDTH) = 64  # channels of the first stage; stage i has width * 2^i
    blocks: Annotated[list[Bounded(MAX_BLOCKS)], Field(min_length=1, max_length=6)] = Field(
        default_factory=lambda: [2, 2, 2, 2])  # BasicBlocks per stage (ResNet-18: 2,2,2,2)
    batch_norm: bool = True

    @model_validator(mode="after")
    def _check(self) -> "ResNet18":
        last = self.width * 2 ** (len(self.blocks) - 1)
        if last > MAX_RESNET_CHANNELS:
            raise too_large("ResNet18", ("width",), last, MAX_RESNET_CHANNELS,
                            "last-stage channels width x 2^(stages-1)")
        return self


LearnerSpec = Annotated[Union[TwoLayerReLU, PatchCNN, MLP, CNN, ResNet18],
                        Field(discriminator="kind")]

# ----------------------------------------------------------------------------- attacks


MAX_TARGET_CLASSES = 20
APGD_STEPS = 100  # AutoAttack's budget; the default steps of `apgd` and `autoattack`


class AttackSpec(_Model):
    """One attack evaluated at a list of radii (robust accuracy per radius).

    `apgd` is Auto-PGD (Croce & Hein 2020) on `loss` ce | dlr | margin; `targeted` without a
    `target` is APGD-T (targeted DLR at each of the top `n_target_classes` classes). It starts
    from random points (`restarts`) and, when the data model exposes them, from its directions
    (advcore.attacks.starts). `autoattack` is the reliable default: APGD-CE, then APGD-T on the
    points still robust, worst case per point. Both adapt their own step size."""

    kind: Literal["fgsm", "pgd", "feature_direction", "apgd", "autoattack"] = "pgd"
    norm: Literal["l2", "linf"] = "l2"
    radii: Annotated[list[NonNegFloat], Field(min_length=1, max_length=MAX_RADII)] = Field(
        default_factory=lambda: [1.0])
    steps: Bounded(MAX_STEPS) = 20  # apgd/autoattack: 100
    step_size: Literal["auto"] | PositiveFloat = "auto"  # auto: 2.5 * radius / steps
    restarts: Bounded(MAX_RESTARTS) = 1  # random starts (per target)
    random_start: bool = True
    loss: Literal["ce", "margin", "dlr"] = "margin"  # margin = CW-style; apgd: ce unless given
    targeted: bool = False
    target: Annotated[int, Field(ge=0)] | None = None  # class index for targeted attacks
    n_target_classes: Annotated[int, Field(ge=1, le=MAX_TARGET_CLASSES)] = 9  # APGD-T's targets
    # apgd / autoattack: also start from the data model's directions (advcore.attacks.starts)
    data_starts: bool = True
    subspace: Literal["robust", "non_robust"] | Annotated[
        list[Annotated[list[float], Field(max_length=MAX_DIM)]],
        Field(max_length=MAX_DIRECTIONS)] | None = None
    budget: Literal["global", "per_patch"] = "global"  # patch inputs only
    box: Annotated[list[float], Field(min_length=2, max_length=2)] | None = None  # None: unbounded
    # fine-label models: which reading is attacked. binary: the evaluation's binary read-out
    # (evaluation.readout); sum / argmax: that binary read-out (advcore.train.binary_readout);
    # fine: the k-class task. A model with a binary head has one reading: binary, sum and
    # argmax all attack it.
    readout: Literal["binary", "sum", "argmax", "fine"] = "binary"
    # feature_direction only. feature: the data model's one attack direction, reported as is;
    # data: per example the worst of every fixed direction the data model exposes (feature
    # direction, class-mean difference, opposite clusters, and each cluster pair u_t - u_own of
    # an opposite cluster t: the weakest direction of the argmax read-out), scaled to the radius
    directions: Literal["feature", "data"] = "feature"
    name: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]{1,40}$")  # metric label
    # set by resolve(), never needed in a request: why the attack is in the resolved spec
    # ("reliable_default": autoattack at the training radius, added after adversarial training)
    added: Literal["reliable_default"] | None = None

    @model_validator(mode="before")
    @classmethod
    def _apgd_defaults(cls, data):
        """APGD's own defaults where the user gave none: 100 steps, the CE loss (DLR when
        targeted). Filled into the input, so the canonical form states them."""
        if isinstance(data, dict) and data.get("kind") in ("apgd", "autoattack"):
            data = dict(data)
            data.setdefault("steps", APGD_STEPS)
            if data["kind"] == "apgd":
                data.setdefault("loss", "dlr" if data.get("targeted") else "ce")
        return data

    @model_validator(mode="after")
    def _check(self) -> "AttackSpec":
        if self.targeted and self.target is None and self.kind != "apgd":
            raise ValueError("targeted attacks need `target` (only apgd targets the top classes)")
        if self.box is not None and not self.box[0] < self.box[1]:
            raise ValueError("box must be [lo, hi] with lo < hi")
        if self.name is not None and self.name.startswith("min_"):
            raise ValueError("names starting with 'min_' are reserved for the minimum over attacks")
        if self.loss == "dlr" and self.kind not in ("apgd", "autoattack"):
            raise ValueError("loss 'dlr' is APGD's: use kind 'apgd'")
        if self.kind in ("apgd", "autoattack") and self.step_size != "auto":
            raise ValueError(f"{self.kind} adapts its own step size: leave step_size 'auto'")
        if self.kind == "apgd" and self.targeted and self.loss != "dlr":
            raise ValueError("targeted apgd (APGD-T) uses loss 'dlr'")
        if self.kind == "autoattack":
            if self.targeted:
                raise ValueError("autoattack runs APGD-T itself: leave `targeted` false")
            if self.loss != "margin":
                raise ValueError("autoattack's losses are fixed (CE, then targeted DLR): "
                                 "leave `loss` unset")
            if not self.random_start:
                raise ValueError("autoattack always starts from random points")
        targets_classes = self.kind == "autoattack" or (self.kind == "apgd" and self.targeted
                                                        and self.target is None)
        if not self.data_starts and self.kind not in ("apgd", "autoattack"):
            raise ValueError("data_starts applies to apgd and autoattack only")
        if self.directions != "feature" and self.kind != "feature_direction":
            raise ValueError("directions applies to the feature_direction attack only")
        if self.n_target_classes != 9 and not targets_classes:
            raise ValueError("n_target_classes applies to autoattack and targeted apgd without "
                             "a `target` only")
        if self.passes > MAX_ATTACK_PASSES:
            raise too_large("AttackSpec", ("steps",), self.passes, MAX_ATTACK_PASSES,
                            "(steps + 1) x restarts x radii")
        return self

    @property
    def passes(self) -> int:
        """Model passes per attacked point (the unit of MAX_ATTACK_PASSES)."""
        return (self.steps + 1) * self.restarts * len(self.radii)

    @property
    def label(self) -> str:
        """Metric label, e.g. `pgd_l2`, `pgd_linf_non_robust`, `feature_direction`."""
        if self.name:
            return self.name
        readout = f"_{self.readout}" if self.readout != "binary" else ""
        if self.kind == "feature_direction":
            return ("data_directions" if self.directions == "data" else "feature_direction") \
                + readout
        label = f"{self.kind}_{self.norm}"
        if self.kind == "apgd":
            label = f"apgdt_{self.norm}" if self.targeted and self.target is None \
                else f"apgd_{self.loss}_{self.norm}"
        if isinstance(self.subspace, str):
            label += f"_{self.subspace}"
        elif self.subspace is not None:
            label += "_subspace"
        if self.targeted and self.target is not None:
            label += f"_to{self.target}"
        return label + readout

    @property
    def threat_label(self) -> str:
        """Label of the robust accuracy against every attack of the same threat (norm, budget,
        read-out): `min_l2`, `min_linf_per_patch`, `min_l2_fine`, `min_l2_argmax`. A box only
        narrows the ball (images: resolve() boxes every attack), so boxed and unboxed attacks
        share it; attacks of different read-outs never do. An attack restricted to a subspace
        measures a smaller threat on purpose (`min_l2_non_robust`): it is never compared with
        the whole ball's attacks, whose disagreement with it would be no sign of masking."""
        label = f"min_{self.norm}"
        if self.budget == "per_patch":
            label += "_per_patch"
        if isinstance(self.subspace, str):
            label += f"_{self.subspace}"
        elif self.subspace is not None:
            label += "_subspace"
        if self.readout != "binary":
            label += f"_{self.readout}"
        return label


def format_radius(radius: float) -> str:
    """Radii in metric names: `4`, `0.5`, `1e-05` (shortest round-tripping form)."""
    return format(float(radius), "g")


def robust_metric(split: str, label: str, radius: float) -> str:
    """The one spelling of a robust-accuracy metric: `test/robust_accuracy/pgd_l2@4` (an
    attack's label, or a threat's `min_...` label for the minimum over attacks)."""
    return f"{split}/robust_accuracy/{label}@{format_radius(radius)}"


def metric_order(name: str) -> tuple[str, float, str]:
    """Sort key for metric names: a name's `@radius` compares as a number (`pgd_l2@2` before
    `pgd_l2@10`), everything else as text."""
    head, at, radius = name.rpartition("@")
    if at:
        try:
            return head, float(radius), ""
        except ValueError:
            pass
    return name, float("-inf"), ""


# ----------------------------------------------------------------------------- training


class OptimizerSpec(_Model):
    kind: Literal["gd", "sgd", "adam"] = "gd"  # gd = full batch, whatever batch_size says
    lr: PositiveFloat = 0.07
    momentum: Annotated[float, Field(ge=0, lt=1)] = 0.0
    weight_decay: NonNegFloat = 0.0
    # proximal l1 penalty l1 * sum|w| on every parameter: after each step every weight is
    # soft-thresholded by lr * l1 (exact for gd/sgd without momentum). It is the dual of an
    # l_inf attack, whose leverage on a linear unit w is eps * ||w||_1.
    l1: Annotated[float, Field(ge=0, le=100, allow_inf_nan=False)] = 0.0


class TrainingSpec(_Model):
    # fine_labels: deprecated spelling of labels "fine" (resolve() rewrites it and says so in
    # the resolved spec's `warnings`)
    mode: Literal["standard", "adversarial", "fine_labels"] = "standard"
    labels: Literal["binary", "fine"] = "binary"  # fine: one output per cluster/class
    optimizer: OptimizerSpec = Field(default_factory=OptimizerSpec)
    epochs: Bounded(MAX_EPOCHS) = 100  # an epoch is one pass; with gd, one step
    batch_size: PositiveInt | None = None  # None = full batch
    loss: Literal["logistic", "cross_entropy"] | None = None  # None: logistic/binary, CE/fine
    adversary: AttackSpec | None = None  # the inner maximisation for mode="adversarial"

    @model_validator(mode="after")
    def _check(self) -> "TrainingSpec":
        if self.mode == "adversarial" and self.adversary is None:
            raise ValueError("mode 'adversarial' needs an `adversary` attack spec")
        if self.adversary is not None and self.adversary.kind in ("feature_direction",
                                                                  "autoattack"):
            raise ValueError("the adversary must be 'pgd', 'apgd' or 'fgsm'")
        if self.adversary is not None and len(self.adversary.radii) != 1:
            raise ValueError("the adversary takes exactly one radius")
        return self


FINE_LABELS_DEPRECATED = ("training.mode 'fine_labels' is deprecated: it was read as mode "
                          "'standard' with labels 'fine'; write training.labels 'fine'")

# decoupling: class-cosine matrix of the penultimate layer vs class means (advcore.decoupling)
Record = Literal["correlations", "weight_norms", "margins", "decoupling"]


class EvaluationSpec(_Model):
    """What each evaluation measures and when (advcore.schedule): `every` is the period of the
    cheap records, the attacks and the stored matrices unless one of the *_every says otherwise;
    the last epoch always has all three."""

    every: PositiveInt = 10  # evaluate every `every` epochs (and at the first and last)
    record_every: PositiveInt | None = None  # losses, accuracies, correlations (None: every)
    # robust accuracies every this many epochs, or at the listed epochs (None: every)
    attack_every: PositiveInt | Annotated[list[PositiveInt], Field(
        min_length=1, max_length=MAX_ATTACK_EPOCHS)] | None = None
    matrix_every: PositiveInt | None = None  # store matrices at evaluated multiples of it
    # How a fine-label model on data with a J+ split (multi_cluster; images with a binary map)
    # is read as a binary classifier: its reported clean accuracy (train and test), margins,
    # and every attack whose readout is "binary" (advcore.train.binary_readout).
    # argmax: predict the cluster, take its side; margin max_{own} F_j - max_{opposite} F_t.
    #   The feature-averaging paper reads its Fig. 3 fine-label network this way: flipping
    #   needs <u_t - u_own, delta> >= ||mu|| for some opposite cluster t, so the cliff of a
    #   decoupled network is at ||mu||/sqrt(2) = sqrt(d/2) (39.2 at d=3072, k=10).
    # sum: sum_{J+} F_j - sum_{J-} F_j. Weaker: the direction -u_own + sum_{opposite} u_l lowers
    #   it k/2 + 1 ways at once, so its cliff is at sqrt(2d/(k+2)) (22.6 at d=3072, k=10).
    readout: Literal["sum", "argmax"] = "sum"
    attacks: Annotated[list[AttackSpec], Field(max_length=MAX_ATTACKS)] = Field(
        default_factory=list)
    record: Annotated[list[Record], Field(max_length=8)] = Field(
        default_factory=lambda: ["correlations", "weight_norms"])
    n_attack: Bounded(MAX_SAMPLES) | None = None  # attack only the first n test points; None = all
    attack_train: bool = False  # also report robust accuracy on the training set
    # attacks at one radius whose robust accuracies differ by more than this are flagged in
    # the summary (`disagreements`): how gradient masking shows (0.02 = 2 points)
    disagreement_gap: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)] = 0.02

    @model_validator(mode="after")
    def _check(self) -> "EvaluationSpec":
        passes = sum(a.passes for a in self.attacks)
        if passes > MAX_ATTACK_PASSES:
            worst = max(range(len(self.attacks)), key=lambda i: self.attacks[i].passes)
            raise too_large("EvaluationSpec", ("attacks", worst), passes, MAX_ATTACK_PASSES,
                            "sum over attacks of (steps + 1) x restarts x radii")
        return self


# ----------------------------------------------------------------------------- studies


class SeparationStudy(_Model):
    """Data-separation table (science.md §C): exact minimum distances between differently
    labelled train points and from each test point to the nearest differently labelled train
    point, in each norm, next to `eps`. Trains nothing (advcore.separation)."""

    kind: Literal["separation"] = "separation"
    norms: Annotated[list[Literal["linf", "l2"]], Field(min_length=1, max_length=2)] = Field(
        default_factory=lambda: ["linf", "l2"])
    labels: Literal["fine", "main"] = "fine"  # fine: class labels when the data has them
    eps: NonNegFloat | None = None  # the attack radius printed next to the distances


class ReconstructionSpec(_Model):
    """Ilyas et al. feature reconstruction: x_hat from noise with G(x_hat) ~= G(x)."""

    steps: Bounded(MAX_STEPS) = 300
    step_size: PositiveFloat = 0.1  # normalised l2 gradient steps (decayed linearly to 0)
    n_per_class: Bounded(MAX_PER_CLASS) = 20  # training images reconstructed per class
    n_directions: Bounded(MAX_DIRECTIONS) = 4  # per-class basis size (top singular directions)
    # data: x_0 = a training image of another class (as Ilyas et al. start their robust data
    # set), so x_hat - x_0 is what moves an image into the class; noise: x_0 uniform in the box
    # (on 8x8 digits noise starts gave no clear NRF > RF gap on the standard model)
    init: Literal["data", "noise"] = "data"


class FeatureAttackStudy(_Model):
    """NRF-PGD vs RF-PGD (science.md §B item 3 on real images): trains a standard and an
    adversarially trained model (same learner, data, seeds), reconstructs per-class features
    from each, and reports targeted success rates of PGD restricted to the non-robust
    (standard-model) or robust (adversarial-model) subspace of each (source, target) pair."""

    kind: Literal["feature_attacks"] = "feature_attacks"
    pairs: Annotated[list[Annotated[list[Annotated[int, Field(ge=0, le=9)]], Field(min_length=2, max_length=2)]],
                     Field(min_length=1, max_length=MAX_PAIRS)] = Field(default_factory=lambda: [[3, 8], [8, 3], [1, 7], [7, 1]])
    adversary: AttackSpec = Field(default_factory=lambda: AttackSpec(
        kind="pgd", norm="l2", radii=[1.0], steps=10))  # adversarial training of the robust model
    attack: AttackSpec = Field(default_factory=lambda: AttackSpec(
        kind="pgd", norm="l2", radii=[1.0], steps=50))  # the subspace attack (made targeted)
    reconstruction: ReconstructionSpec = Field(default_factory=ReconstructionSpec)


StudySpec = Annotated[Union[SeparationStudy, FeatureAttackStudy], Field(discriminator="kind")]


class ExperimentSpec(_Model):
    name: str = Field(default="experiment", max_length=200)
    tags: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(
        default_factory=list, max_length=32
    )
    seed: Annotated[int, Field(ge=0, le=2**31 - 1)] = 0
    seeds: list[Annotated[int, Field(ge=0, le=2**31 - 1)]] | None = Field(
        default=None, min_length=1, max_length=64
    )  # several seeds trained as one batched computation; overrides `seed`
    device: Literal["auto", "cpu", "cuda"] = "auto"
    advlab_version: str | None = Field(default=None, max_length=40)  # set by the server; not hashed
    # set by resolve(), not hashed: deprecated spellings it rewrote, one sentence each
    warnings: list[Annotated[str, Field(max_length=300)]] = Field(default_factory=list,
                                                                  max_length=16)
    data: DataSpec = Field(default_factory=MultiClusterData)
    learner: LearnerSpec = Field(default_factory=TwoLayerReLU)
    training: TrainingSpec = Field(default_factory=TrainingSpec)
    evaluation: EvaluationSpec = Field(default_factory=EvaluationSpec)
    study: StudySpec | None = None  # a study replaces the single training run (advcore.studies)

    @field_validator("seeds")
    @classmethod
    def _unique_seeds(cls, v: list[int] | None) -> list[int] | None:
        if v is not None and len(set(v)) != len(v):
            raise ValueError("seeds must be distinct")
        return v

    @model_validator(mode="after")
    def _check(self) -> "ExperimentSpec":
        fine = self.training.labels == "fine" or self.training.mode == "fine_labels"
        if fine and self.data.kind == "separated":
            raise ValueError("fine labels need a data model with sub-classes (not 'separated')")
        if self.learner.kind == "patch_cnn" and self.data.kind != "patch":
            raise ValueError("learner 'patch_cnn' needs data kind 'patch'")
        if self.data.kind == "patch" and self.learner.kind != "patch_cnn":
            raise ValueError("data kind 'patch' needs learner 'patch_cnn'")
        if self.learner.kind in ("cnn", "resnet18") and self.data.kind != "image":
            raise ValueError(f"learner {self.learner.kind!r} needs data kind 'image' "
                             "(convolutions over (C, H, W) inputs)")
        if self.study is not None and self.study.kind == "feature_attacks" and self.data.kind != "image":
            raise ValueError("study 'feature_attacks' needs image data (class labels and pixels)")
        self._check_sizes()
        self._check_reliable_default()
        return self

    def _check_reliable_default(self) -> None:
        """The attack bounds hold with the reliable default that resolve() adds."""
        default = reliable_default(self.training, self.evaluation.attacks)
        if default is None:
            return
        attacks = self.evaluation.attacks
        if len(attacks) + 1 > MAX_ATTACKS:
            raise too_large("ExperimentSpec", ("evaluation", "attacks"), len(attacks) + 1,
                            MAX_ATTACKS, "attacks with the reliable default after adversarial "
                            "training (autoattack at the training radius)")
        passes = sum(a.passes for a in attacks) + default.passes
        if passes > MAX_ATTACK_PASSES:
            raise too_large("ExperimentSpec", ("evaluation", "attacks"), passes,
                            MAX_ATTACK_PASSES, "sum over attacks of (steps + 1) x restarts x "
                            "radii, with the reliable default after adversarial training")

    def _check_sizes(self) -> None:
        """Hard bounds on products of fields from several sections (data x seeds, epochs x
        batches, epochs / every); each error names the factor that is largest against its
        usual size."""
        n_train, n_test, elements, size_field = data_size(self.data)
        kind = self.data.kind
        S = len(self.seed_list)
        total = S * (n_train + n_test) * elements
        if total > MAX_DATA_ELEMENTS:
            usual = {("seeds",): S / 5, ("data", kind, "n_train"): n_train / 10_000,
                     ("data", kind, "n_test"): n_test / 10_000,
                     ("data", kind, size_field): elements / 3072}
            raise too_large("ExperimentSpec", max(usual, key=usual.get), total,
                            MAX_DATA_ELEMENTS, "seeds x (n_train + n_test) x input size")
        t = self.training
        full = t.optimizer.kind == "gd" or t.batch_size is None or t.batch_size >= n_train
        per_epoch = 1 if full else -(-n_train // t.batch_size)
        if t.epochs * per_epoch > MAX_OPTIMIZER_STEPS:
            batches_dominate = per_epoch / 400 > t.epochs / 300  # against their usual sizes
            loc = ("training", "batch_size") if batches_dominate else ("training", "epochs")
            raise too_large("ExperimentSpec", loc, t.epochs * per_epoch, MAX_OPTIMIZER_STEPS,
                            "epochs x batches per epoch")
        ev = self.evaluation
        for name in ("every", "record_every", "attack_every"):
            period = getattr(ev, name)
            if isinstance(period, int) and t.epochs // period > MAX_EVALUATIONS:
                raise too_large("ExperimentSpec", ("evaluation", name), t.epochs // period,
                                MAX_EVALUATIONS, f"epochs / {name}")
        if isinstance(ev.attack_every, list):
            late = [i for i, e in enumerate(ev.attack_every) if e > t.epochs]
            if late:
                raise too_large("ExperimentSpec", ("evaluation", "attack_every", late[0]),
                                ev.attack_every[late[0]], t.epochs, "an attacked epoch")

    # ------------------------------------------------------------------ canonical form

    @property
    def seed_list(self) -> list[int]:
        return list(self.seeds) if self.seeds else [self.seed]

    @property
    def total_steps(self) -> int:
        """Progress total: the number of epochs (the step unit of every metric); a feature-attack
        study trains two models, a separation study is one step."""
        if self.study is not None:
            return 1 if self.study.kind == "separation" else 2 * self.training.epochs
        return self.training.epochs

    def resolve(self) -> "ExperimentSpec":
        """Fill the defaults that depend on other fields; idempotent. Returns a new spec."""
        spec = self.model_copy(deep=True)
        t = spec.training
        if t.mode == "fine_labels":
            t.mode, t.labels = "standard", "fine"
            spec.warnings = [*spec.warnings, FINE_LABELS_DEPRECATED][-16:]
        if spec.data.kind == "patch":
            t.labels = "fine"  # the patch model is a k-class problem
        if t.loss is None:
            binary_head = t.labels == "binary" and spec.data.kind != "patch"
            t.loss = "logistic" if binary_head else "cross_entropy"
        if spec.data.kind == "multi_cluster" and spec.data.positive_clusters is None:
            spec.data.positive_clusters = list(range(spec.data.k // 2))
        if spec.data.kind == "multi_cluster" and spec.data.mean_norm is None:
            spec.data.mean_norm = math.sqrt(spec.data.d)
        study_attacks = []
        if spec.study is not None and spec.study.kind == "feature_attacks":
            t.labels, t.loss = "fine", "cross_entropy"  # targets are classes: k-class models
            study_attacks = [spec.study.adversary, spec.study.attack]
        if spec.data.kind == "image":
            for attack in [*spec.evaluation.attacks, *([t.adversary] if t.adversary else []),
                           *study_attacks]:
                if attack.box is None:
                    attack.box = [0.0, 1.0]  # pixels live in [0, 1]
        default = reliable_default(t, spec.evaluation.attacks)
        if default is not None:
            spec.evaluation.attacks = [*spec.evaluation.attacks, default]
        _RESOLVED[id(spec)] = spec
        return spec

    def as_resolved(self) -> "ExperimentSpec":
        """This spec itself when resolve() returned it, else resolve(): a spec resolved once
        is priced, hashed and run as is (resolving is the larger part of pricing a spec)."""
        return self if _RESOLVED.get(id(self)) is self else self.resolve()

    def canonical_json(self) -> str:
        """Sorted-key JSON of the resolved spec without name, tags, advlab_version, warnings."""
        body = self.as_resolved().model_dump(
            mode="json", exclude={"name", "tags", "advlab_version", "warnings"})
        return json.dumps(body, sort_keys=True, separators=(",", ":"))

    def spec_hash(self) -> str:
        return hashlib.sha256(f"v{SPEC_VERSION}:{self.canonical_json()}".encode()).hexdigest()


# The specs resolve() returned, held weakly (an entry goes with its spec): as_resolved() returns
# them as they are. A copy is not in it, so model_copy(update=...) of a resolved spec is resolved
# again; a resolved spec is not changed in place after resolve() (advlab_version aside).
_RESOLVED: "weakref.WeakValueDictionary[int, ExperimentSpec]" = weakref.WeakValueDictionary()


def reliable_default(training: TrainingSpec, attacks: list[AttackSpec]) -> AttackSpec | None:
    """After adversarial training, the evaluation always includes `autoattack` at the training
    norm and radius (same budget, box and read-out): the adversary's own attack is the one the
    model was optimised against, so its robust accuracy alone is not evidence. None when not
    adversarial or when an attack listed already is that autoattack."""
    adversary = training.adversary
    if training.mode != "adversarial" or adversary is None:
        return None
    radius = adversary.radii[0]
    for a in attacks:
        if a.kind == "autoattack" and a.norm == adversary.norm and radius in a.radii \
                and a.subspace is None and a.budget == adversary.budget \
                and a.box == adversary.box and a.readout == adversary.readout:
            return None
    return AttackSpec(kind="autoattack", norm=adversary.norm, radii=[radius],
                      budget=adversary.budget, box=adversary.box, readout=adversary.readout,
                      added="reliable_default")


def data_size(data) -> tuple[int, int, int, str]:
    """(n_train, n_test, input elements, the field setting the input size) of a data spec,
    from its fields alone (images: the standard files' sizes, classes assumed balanced)."""
    if data.kind == "image":
        full_train, full_test, shape = IMAGE_SETS[data.dataset]
        if isinstance(data.binary, list):
            kept = len(set(data.binary[0]) | set(data.binary[1]))
        else:
            kept = len(set(data.classes)) if data.classes else 10
        n_train = min(data.n_train or full_train, math.ceil(full_train * kept / 10))
        n_test = min(data.n_test or full_test, math.ceil(full_test * kept / 10))
        return n_train, n_test, math.prod(shape), "dataset"
    if data.kind == "patch":
        return data.n_train, data.n_test, data.patches * data.d, "patches"
    return data.n_train, data.n_test, data.d, "d"


def parse_spec(obj: dict | str) -> ExperimentSpec:
    """Validate a dict or JSON text; raises pydantic.ValidationError with field paths."""
    if isinstance(obj, str):
        return ExperimentSpec.model_validate_json(obj)
    return ExperimentSpec.model_validate(obj)

"""Named, documented spec templates: one per experiment of the three papers (shared/science.md).

Each template is an `examples/*.json` spec plus what it is for: the paper, a title, one
sentence on what it should show, the template to compare it with, and for width studies the
sweep grid that makes the experiment. `GET /v1/templates`, `advlab templates` and
`Client.submit("feature_averaging_binary")` all read this registry.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

FEATURE_AVERAGING = "A. Feature averaging (Li et al., ICLR 2025, arXiv 2410.10322)"
ROBUST_FEATURES = "B. Adversarial training learns robust features (Li et al., ICLR 2025, " \
                  "arXiv 2410.08503)"
EXPRESSIVE_POWER = "C. Robust generalization needs expressive power (Li et al., NeurIPS 2022, " \
                   "arXiv 2205.13863)"


@dataclass(frozen=True)
class Template:
    name: str
    file: str  # under examples/
    paper: str
    title: str
    shows: str  # one sentence: what the run should show
    compare_with: list[str] = field(default_factory=list)
    sweep: dict[str, list[Any]] | None = None  # suggested grid over dotted spec paths

    def spec(self) -> dict[str, Any]:
        return json.loads((EXAMPLES / self.file).read_text())

    def default_grid(self) -> dict[str, list[Any]]:
        """The grid the submit page proposes: the template's own, else a comparison its spec
        supports as it stands — standard vs adversarial only when it names an adversary
        (adversarial training needs one), binary vs fine labels for cluster data, else the
        width doubled."""
        if self.sweep:
            return self.sweep
        spec = self.spec()
        training, learner = spec.get("training", {}), spec.get("learner", {})
        if training.get("adversary"):
            return {"training.mode": ["standard", "adversarial"]}
        if spec.get("data", {}).get("kind") == "multi_cluster":
            return {"training.labels": ["binary", "fine"]}
        if isinstance(learner.get("width"), int):
            return {"learner.width": [learner["width"], 2 * learner["width"]]}
        return {"seed": [0, 1]}

    def describe(self, with_spec: bool = True) -> dict[str, Any]:
        out = {"name": self.name, "title": self.title, "paper": self.paper, "shows": self.shows,
               "compare_with": list(self.compare_with), "sweep": self.sweep,
               "example": f"examples/{self.file}"}
        if with_spec:
            out["spec"] = self.spec()
        return out


_WIDTHS = {"learner.widths": [[16], [256], [2048]]}

TEMPLATES: dict[str, Template] = {t.name: t for t in [
    Template(
        "quickstart", "quickstart.json", FEATURE_AVERAGING,
        "Feature averaging in seconds (d=100, k=4, binary labels)",
        "GD on binary labels averages the two clusters of each class (cosines ≈ 0.7 = 1/√2 on "
        "both), and PGD and the fixed feature direction break it near √(d/k) = 5.",
        compare_with=["quickstart with --set training.labels=fine"]),
    Template(
        "feature_averaging_binary", "feature_averaging_binary.json", FEATURE_AVERAGING,
        "Feature averaging: binary labels (d=500, k=10)",
        "Each neuron's cosine row is flat (≈ 0.45) over its class's five clusters and robust "
        "accuracy collapses near √(d/k) ≈ 7, for PGD and the model-independent direction alike.",
        compare_with=["feature_averaging_fine"]),
    Template(
        "feature_averaging_fine", "feature_averaging_fine.json", FEATURE_AVERAGING,
        "Feature decoupling: fine (10-class) labels read out as binary",
        "Fine labels give one neuron per cluster (cosine matrix near a permutation). Read back "
        "as binary by argmax (the paper's Fig. 3 reading: `pgd_l2`, `data_directions`) they "
        "stay robust to near √(d/2) ≈ 16; by the sum of a side's logits (`*_sum`) they break "
        "earlier, near √(2d/(k+2)) ≈ 9 and above.",
        compare_with=["feature_averaging_binary"]),
    Template(
        "digits_binary", "digits_binary.json", FEATURE_AVERAGING,
        "Real data: 8×8 digits, even vs odd with 2-class labels",
        "The real-data version of feature averaging: neurons mix several digits' class means "
        "and l2 PGD robust accuracy falls to ≈ 0 by radius 2.",
        compare_with=["digits_fine"]),
    Template(
        "digits_fine", "digits_fine.json", FEATURE_AVERAGING,
        "Real data: 8×8 digits, even vs odd learned through 10-class labels",
        "Training on the ten digit labels gives neurons aligned with single class means; "
        "compare its robust-accuracy curve and cosine heat-map with digits_binary.",
        compare_with=["digits_binary"]),
    Template(
        "patch_standard", "patch_standard.json", ROBUST_FEATURES,
        "Patch data, standard training",
        "Standard training learns the dense non-robust features v (corr/non_robust ≫ "
        "corr/robust): clean accuracy ≈ 100%, robust accuracy ≈ 0, and the NRF-subspace "
        "attack alone succeeds.",
        compare_with=["patch_adversarial"]),
    Template(
        "patch_adversarial", "patch_adversarial.json", ROBUST_FEATURES,
        "Patch data, adversarial training (PGD, l∞, l1-bounded filters)",
        "Adversarial training stalls non-robust feature learning and grows the robust "
        "features u; watch the correlation trajectories. Every filter stays in the l1 ball "
        "of radius 0.5 (learner.max_filter_l1), so an l∞ attack moves it by at most "
        "ε*0.5 = 0.04 < ρ on each patch and robust accuracy at ε = 0.08 holds under "
        "autoattack (added to every adversarial run), not only under the PGD it was trained "
        "against. Without the ball a filter c*u_j lets the attack spread c*ε over all P "
        "patches, and past c*ε ≈ ρ that beats the single robust patch.",
        compare_with=["patch_standard"]),
    Template(
        "separated_width_16", "separated_width_16.json", EXPRESSIVE_POWER,
        "Separated data, adversarial training, width 16",
        "A narrow network cannot even fit the training set robustly: robust train accuracy "
        "stays well below 100%.",
        compare_with=["separated_width_256", "separated_width_2048"], sweep=_WIDTHS),
    Template(
        "separated_width_256", "separated_width_256.json", EXPRESSIVE_POWER,
        "Separated data, adversarial training, width 256",
        "Robust train accuracy approaches 100% with width while robust test accuracy stays "
        "clearly lower: robust fitting is easy, robust generalisation is not.",
        compare_with=["separated_width_16", "separated_width_2048"], sweep=_WIDTHS),
    Template(
        "separated_width_2048", "separated_width_2048.json", EXPRESSIVE_POWER,
        "Separated data, adversarial training, width 2048",
        "Even a very wide network improves robust test accuracy only slowly with width, "
        "although the classes are 2ε apart (a robust classifier exists).",
        compare_with=["separated_width_16", "separated_width_256"], sweep=_WIDTHS),
]}


class UnknownTemplate(KeyError):
    """No template with that name (404)."""


def get_template(name: str) -> Template:
    try:
        return TEMPLATES[name]
    except KeyError:
        raise UnknownTemplate(name) from None


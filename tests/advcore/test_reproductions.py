"""The reproduction catalogue (advcore.reproductions): every entry's specs are valid at both
sizes and admissible on a 2-core box by the cost model; the feature-averaging entry's quick
size, really run, reproduces the paper's claims (all hold) and draws a figure that decodes."""

from __future__ import annotations

import io
import math

import pytest

from advcore import reproductions as rep
from advcore.cost import estimate
from advcore.spec import parse_spec


@pytest.mark.parametrize("name", sorted(rep.CATALOGUE))
@pytest.mark.parametrize("size", rep.SIZES)
def test_every_entry_builds_valid_member_specs(name, size):
    entry = rep.get(name)
    points = rep.points_of(entry.sizes[size])
    assert points
    for point in points:
        spec = parse_spec(rep.member_spec(entry, size, point)).resolve()
        assert spec.seed_list == entry.sizes[size].seeds
        if size == "quick":  # a quick member stays well inside the default cpu limits
            assert estimate(spec).flops < 2e12
    described = entry.describe()
    assert described["claims"] and all(c["criterion"] for c in described["claims"])


def test_unknown_name_says_which_exist():
    with pytest.raises(KeyError, match="feature_averaging"):
        rep.get("nope")


def test_claims_on_hand_made_results_give_effect_size_spread_and_verdict():
    """Cliffs at exactly the theory marks: every feature-averaging claim holds, with the
    mean and sample std over seeds of the per-seed effect."""
    params = rep.FEATURE_AVERAGING.sizes["quick"].params
    dk, d2 = params["sqrt_d_k"], params["sqrt_d_2"]

    def finals(cliff, cos):
        radii = [0.5 * dk, cliff, 2 * d2]
        out = {f"test/robust_accuracy/min_l2@{r:g}": a for r, a in zip(radii, [1.0, 0.1, 0.0])}
        return {**out, "corr/cluster/mean": cos}

    points = [rep.PointResult({"training.labels": "binary"}, [0, 1],
                              [finals(dk, 0.45), finals(1.1 * dk, 0.46)]),
              rep.PointResult({"training.labels": "fine"}, [0, 1],
                              [finals(d2, 0.97), finals(d2, 0.95)])]
    verdict = rep.verdict(rep.FEATURE_AVERAGING, "quick", points)
    by_key = {c["key"]: c for c in verdict["claims"]}
    assert verdict["holds"], verdict["claims"]
    assert by_key["binary_cliff"]["ours"]["mean"] == pytest.approx(1.05, rel=1e-4)
    assert by_key["binary_cliff"]["ours"]["std"] == pytest.approx(math.sqrt(0.005), rel=1e-3)
    assert by_key["binary_cliff"]["paper"] == pytest.approx(17.45 / math.sqrt(307.2), abs=0.01)
    # a missing grid point: the claims that need it do not hold, and say why
    broken = rep.verdict(rep.FEATURE_AVERAGING, "quick", points[:1])
    assert not broken["holds"]
    assert "error" in {c["key"]: c for c in broken["claims"]}["fine_cliff"]


@pytest.mark.slow
def test_feature_averaging_quick_reproduces_the_paper_and_draws_the_figure():
    from matplotlib.image import imread

    from service.reproduction_figures import figure_png

    points, matrices = rep.run_local("feature_averaging", "quick", device="cpu", progress=False)
    verdict = rep.verdict(rep.FEATURE_AVERAGING, "quick", points)
    failing = [c for c in verdict["claims"] if not c["holds"]]
    assert not failing, failing
    by_key = {c["key"]: c for c in verdict["claims"]}
    assert by_key["fine_over_binary"]["ours"]["mean"] > 1.3  # fine labels: a later cliff
    assert by_key["binary_averaging"]["ours"]["n"] == 3  # one number per seed
    assert {m["point"]["training.labels"] for m in matrices} == {"binary", "fine"}
    image = imread(io.BytesIO(figure_png(rep.FEATURE_AVERAGING, verdict, points, matrices)),
                   format="png")
    assert image.shape[0] > 300 and image.shape[1] > 1000

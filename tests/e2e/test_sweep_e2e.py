"""A sweep end to end on the embedded stack (SQLite + filesystem broker, real API and worker
processes): 2 training modes × 3 seeds on a tiny feature-averaging spec finishes, and the
aggregate table has a mean and a std for each grid point; the seeds of a point run as one batched
job and give the same numbers as one job per seed."""

from __future__ import annotations


import pytest

from devtools.poll import poll
from devtools.stack import launch_stack, tiny_spec

SEEDS = [0, 1, 2]
TERMINAL = {"succeeded", "failed", "canceled"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    stack = launch_stack(tmp_path_factory.mktemp("sweep"), {}, workers=2)
    yield stack
    stack.close()


def base_spec() -> dict:
    spec = tiny_spec(name="sweep e2e", epochs=12, every=4, n=120,
                     attacks=[{"kind": "pgd", "norm": "l2", "radii": [1.0, 2.0], "steps": 5}])
    spec["training"]["adversary"] = {"kind": "pgd", "norm": "l2", "radii": [1.0], "steps": 3}
    return spec


def wait_for_sweep(stack, sweep_id: str, timeout: float = 150) -> dict:
    with stack.client() as client:
        return poll(lambda: client.get(f"/v1/sweeps/{sweep_id}").json(),
                    lambda body: body["status"] in TERMINAL, timeout=timeout, every=0.3,
                    message=lambda body: f"sweep {sweep_id} still {(body or {}).get('status')} "
                                         f"{(body or {}).get('counts')}:\n"
                                         f"{stack.log_text()[-6000:]}")


def post(stack, body: dict) -> dict:
    with stack.client() as client:
        r = client.post("/v1/sweeps", json=body)
    assert r.status_code == 202, r.text
    return r.json()


def test_two_modes_by_three_seeds_finishes_with_mean_and_std_per_grid_point(stack):
    created = post(stack, {"name": "modes e2e", "base": base_spec(), "seeds": SEEDS,
                           "grid": {"training.mode": ["standard", "adversarial"]}})
    assert len(created["experiment_ids"]) == 2  # batched: one job per grid point
    sweep = wait_for_sweep(stack, created["id"])
    assert sweep["status"] == "succeeded", [m["experiment"]["error"] for m in sweep["members"]]
    assert sweep["counts"]["succeeded"] == 2
    rows = sweep["aggregate"]
    assert [r["point"]["training.mode"] for r in rows] == ["standard", "adversarial"]
    for row in rows:
        assert sorted(row["seeds"]) == SEEDS
        for name in ("train/clean_accuracy", "test/clean_accuracy",
                     "test/robust_accuracy/pgd_l2@1", "test/robust_accuracy/pgd_l2@2",
                     "corr/cluster/0"):
            stats = row["metrics"][name]
            assert stats["n"] == 3 and stats["mean"] is not None and stats["std"] is not None
            assert stats["min"] <= stats["mean"] <= stats["max"]
            assert stats["std"] >= 0
        assert row["metrics"]["train/clean_accuracy"]["mean"] > 0.9  # 4 separated clusters
    # the per-seed series of every member are in the store, and the band plot draws them
    with stack.client() as client:
        png = client.get(f"/v1/sweeps/{created['id']}/plots/test/clean_accuracy.png")
        assert png.status_code == 200 and png.content[:4] == b"\x89PNG"
        csv = client.get(f"/v1/sweeps/{created['id']}/export.csv").text.splitlines()
    assert csv[0] == "training.mode,experiment_id,name,seed,step,value"
    assert {line.split(",")[3] for line in csv[1:]} == {str(s) for s in SEEDS}


def test_batched_seeds_give_the_numbers_of_one_job_per_seed(stack):
    body = {"base": base_spec(), "seeds": SEEDS, "grid": {"training.mode": ["standard"]}}
    batched = post(stack, {**body, "name": "batched"})
    separate = post(stack, {**body, "name": "separate", "seed_mode": "separate"})
    assert len(separate["experiment_ids"]) == 3
    (b_row,) = wait_for_sweep(stack, batched["id"])["aggregate"]
    (s_row,) = wait_for_sweep(stack, separate["id"])["aggregate"]
    assert sorted(s_row["seeds"]) == SEEDS
    for name, tol in (("test/clean_accuracy", 1e-6), ("test/robust_accuracy/pgd_l2@1", 1e-6),
                      ("corr/cluster/0", 1e-4)):
        b, s = b_row["metrics"][name], s_row["metrics"][name]
        assert (b["min"], b["max"]) == (pytest.approx(s["min"], abs=tol),
                                        pytest.approx(s["max"], abs=tol)), name
        assert b["mean"] == pytest.approx(s["mean"], abs=tol), name
        assert b["std"] == pytest.approx(s["std"], abs=tol), name

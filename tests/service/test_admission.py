"""Admission from the estimate, on the real app and a real migrated store: every hostile spec of
issue 9 is refused (422 by a hard bound of the spec, or 413 by its estimate) naming the field,
with no row and no queue message; a 10^8-point sweep grid is refused from its shape without
being expanded; a sweep is admitted as a whole; per-queue limits; dry runs store nothing."""

from __future__ import annotations

import tracemalloc

import pytest

from lab.config import Settings
from service.admission import fmt
from tests.service.api_support import spec

SIXTEEN_GB = {"kind": "multi_cluster", "d": 100_000, "n_train": 40_000}
IMAGE = {"kind": "image"}

# (body, status, loc of the refusing item): the hostile specs as it measured them
# (refused by a hard bound of the spec: 422), and the largest of each kind the bounds let
# through (refused by the estimate: 413)
HOSTILE = {
    "16 GB data set": ({"data": SIXTEEN_GB}, 422, ["body", "data", "d"]),
    "16 GB data set within the bounds": (
        {"data": {"kind": "multi_cluster", "d": 20_000, "n_train": 100_000, "n_test": 1000}},
        413, ["body", "data", "n_train"]),
    "64 seeds of the 16 GB data set": ({"seeds": list(range(64)), "data": SIXTEEN_GB},
                                       422, ["body", "data", "d"]),
    "64 seeds of a 120 MB data set": (
        {"seeds": list(range(64)), "data": {"kind": "multi_cluster", "d": 3000,
                                            "n_train": 10_000, "n_test": 100}},
        413, ["body", "seeds"]),
    "2000-layer MLP": ({"learner": {"kind": "mlp", "widths": [64] * 2000}},
                       422, ["body", "learner", "widths"]),
    "16 layers of width 4096": ({"learner": {"kind": "mlp", "widths": [4096] * 16}},
                                413, ["body", "learner", "widths"]),
    "500-layer CNN": ({"data": IMAGE, "learner": {"kind": "cnn", "channels": [8] * 500}},
                      422, ["body", "learner", "channels"]),
    "ResNet-18 of width 10^6": ({"data": IMAGE, "learner": {"kind": "resnet18", "width": 10**6}},
                                422, ["body", "learner", "width"]),
    "ResNet-18 of width 512": ({"data": IMAGE, "learner": {"kind": "resnet18", "width": 512}},
                               413, ["body", "learner", "width"]),
    "ResNet-18 with 10^5 blocks": ({"data": IMAGE,
                                    "learner": {"kind": "resnet18", "blocks": [10**5]}},
                                   422, ["body", "learner", "blocks", 0]),
    "ResNet-18 with 4 x 64 blocks": ({"data": IMAGE,
                                      "learner": {"kind": "resnet18", "blocks": [64] * 4}},
                                     413, ["body", "learner", "blocks"]),
    "patch model with P = 10^6": ({"data": {"kind": "patch", "patches": 10**6},
                                   "learner": {"kind": "patch_cnn"}},
                                  422, ["body", "data", "patches"]),
    "patch model with P = d = 1024": ({"data": {"kind": "patch", "patches": 1024, "d": 1024},
                                       "learner": {"kind": "patch_cnn", "width": 1024}},
                                      413, ["body", "learner", "width"]),
    "10^5 evaluations with k = 20000": (
        {"data": {"kind": "multi_cluster", "d": 20_000, "k": 20_000},
         "training": {"epochs": 100_000}, "evaluation": {"every": 1}},
        422, ["body", "data", "k"]),
    "10^5 evaluations with d = k = width = 1000": (
        {"data": {"kind": "multi_cluster", "d": 1000, "k": 1000},
         "learner": {"kind": "two_layer_relu", "width": 1000},
         "training": {"epochs": 100_000}, "evaluation": {"every": 1}},
        413, ["body", "training", "epochs"]),
    "SGD with batch 1 for 2e10 steps": (
        {"data": {"kind": "multi_cluster", "n_train": 20_000},
         "training": {"optimizer": {"kind": "sgd"}, "batch_size": 1, "epochs": 1000}},
        422, ["body", "training", "batch_size"]),
    "PGD with 10^9 steps": ({"evaluation": {"attacks": [{"steps": 10**9}]}},
                            422, ["body", "evaluation", "attacks", 0, "steps"]),
    "PGD with 10^9 restarts": ({"evaluation": {"attacks": [{"restarts": 10**9}]}},
                               422, ["body", "evaluation", "attacks", 0, "restarts"]),
    "PGD with 10^4 steps x 10 restarts x 64 radii": (
        {"evaluation": {"attacks": [{"steps": 10**4, "restarts": 10, "radii": [1.0] * 64}]}},
        422, ["body", "evaluation", "attacks", 0, "steps"]),
    "PGD with 1000 steps x 16 restarts x 64 radii": (
        {"evaluation": {"attacks": [{"steps": 1000, "restarts": 16, "radii": [1.0] * 64}]}},
        413, ["body", "evaluation", "attacks", 0, "steps"]),
    "400 attacks x 64 radii": ({"evaluation": {"attacks": [{"radii": [1.0] * 64}] * 400}},
                               422, ["body", "evaluation", "attacks"]),
    "16 attacks x 64 radii x 1000 steps": (
        {"evaluation": {"attacks": [{"radii": [1.0] * 64, "steps": 1000}] * 16}},
        413, ["body", "evaluation", "attacks", 0, "steps"]),
    "10^9-step reconstruction study": (
        {"data": {"kind": "image", "binary": None},
         "study": {"kind": "feature_attacks", "reconstruction": {"steps": 10**9}}},
        422, ["body", "study", "reconstruction", "steps"]),
}


@pytest.fixture(scope="module")
def api(make_module_api):
    """One app at the default limits: every test using it must write nothing (and checks so)."""
    return make_module_api()


def assert_nothing_stored(api) -> None:
    assert api.rows() == 0 and api.messages() == [] and api.store.list_sweeps(limit=5) == []


@pytest.mark.parametrize("name", list(HOSTILE))
def test_a_hostile_spec_is_refused_naming_its_field_with_no_row(api, name):
    body, status, loc = HOSTILE[name]
    r = api.client.post("/v1/experiments", json=body)
    assert r.status_code == status, r.text[:500]
    items = r.json()["detail"]
    assert loc in [item["loc"] for item in items], items
    if status == 413:
        item = next(i for i in items if i["loc"] == loc)
        assert item["estimate"] > item["limit"] > 0 and item["queue"] == "cpu"
        assert item["type"].startswith("limit.max_")
        unit = "GFLOP" if item["quantity"] == "flops" else "GB"
        assert f"{fmt(item['estimate'], unit, 1e9)} exceeds" in item["msg"]
        assert f"= {fmt(item['limit'], unit, 1e9)} of the cpu queue" in item["msg"]
        assert item["path"].replace("[", ".").replace("]", "") == ".".join(map(str, loc[1:]))
    assert_nothing_stored(api)


def test_a_sweep_of_256_copies_of_the_16_gb_spec_is_refused_with_no_row(api):
    r = api.client.post("/v1/sweeps", json={
        "base": {"data": {"kind": "multi_cluster", "d": 20_000, "n_train": 100_000}},
        "grid": {"data.sigma": [1.0 + i / 256 for i in range(256)]}})
    assert r.status_code == 413
    (item, *_) = r.json()["detail"]
    assert item["loc"] == ["body", "base", "data", "n_train"] and item["quantity"] == "peak_bytes"
    assert item["msg"].startswith("grid point 0 (data.sigma=1.0)")
    assert_nothing_stored(api)


def test_a_1e8_point_grid_is_refused_from_its_shape_without_expanding_it(api):
    axes = ["learner.width", "data.d", "data.k", "data.n_train", "data.n_test",
            "training.epochs", "evaluation.every", "data.sigma"]
    body = {"base": spec(), "grid": {a: list(range(2, 12)) for a in axes}}
    tracemalloc.start()
    try:
        r = api.client.post("/v1/sweeps", json=body)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert r.status_code == 413
    (item,) = r.json()["detail"]
    assert item["loc"] == ["body", "grid"] and "100000000" in item["msg"]
    assert peak < 16 * 2**20  # expanding the grid would hold 10^8 points (tens of GB)
    assert_nothing_stored(api)


def test_a_sweep_is_admitted_as_a_whole(make_api):
    """Each member fits its queue; together they do not: the sweep is refused, naming the
    sweep limit and the total."""
    api = make_api(max_sweep_gflop=0.02)
    one = api.client.post("/v1/experiments?dry_run=true", json=spec()).json()["gflop"]
    body = {"base": spec(), "grid": {"learner.width": [8, 9]}, "seeds": [0, 1, 2],
            "seed_mode": "separate"}
    assert 6 * one > 0.02 > one  # six members of about one small spec each
    r = api.client.post("/v1/sweeps", json=body)
    assert r.status_code == 413
    (item,) = r.json()["detail"]
    assert item["type"] == "limit.max_sweep_gflop" and item["queue"] == "sweep"
    assert item["estimate"] > 0.02e9 == item["limit"] and "(6 members)" in item["msg"]
    assert_nothing_stored(api)
    api2 = make_api(max_sweep_gflop=1.0)
    assert api2.client.post("/v1/sweeps", json=body).status_code == 202
    assert api2.rows() == 6


def test_a_member_over_its_limit_names_the_grid_axis(make_api):
    api = make_api(max_gflop=0.5)
    width_gflop = {w: api.client.post("/v1/experiments?dry_run=true",
                                      json=spec(**{"learner.width": w})) for w in (8, 4096)}
    assert width_gflop[8].status_code == 200 and width_gflop[4096].status_code == 413
    r = api.client.post("/v1/sweeps", json={"base": spec(),
                                            "grid": {"learner.width": [8, 4096]}})
    assert r.status_code == 413
    (item, *_) = r.json()["detail"]
    assert item["loc"] == ["body", "grid", "learner.width"] and item["quantity"] == "flops"
    assert item["msg"].startswith("grid point 1 (learner.width=4096)")
    assert_nothing_stored(api)


def test_dry_run_returns_the_estimate_and_stores_nothing(api):
    r = api.client.post("/v1/experiments?dry_run=true", json=spec())
    assert r.status_code == 200
    est = r.json()
    assert est["dry_run"] is True and est["queue"] == "cpu"
    assert 0 < est["flops"] < est["limits"]["flops"] == 50_000e9
    assert est["gflop"] == pytest.approx(est["flops"] / 1e9)
    assert 0 < est["peak_bytes"] < est["limits"]["peak_bytes"] == 8e9
    assert 0 < est["stored_bytes"] < est["limits"]["stored_bytes"] == 1e9
    assert est["n_evaluations"] == 6 and set(est["dominant"]) == set(est["terms"])
    r = api.client.post("/v1/sweeps?dry_run=true", json={
        "base": spec(), "grid": {"learner.width": [8, 16]}, "seeds": [0, 1]})
    assert r.status_code == 200
    sweep = r.json()
    assert sweep["n_members"] == 2 and len(sweep["members"]) == 2
    assert sweep["flops"] == pytest.approx(sum(m["flops"] for m in sweep["members"]))
    assert sweep["members"][1]["flops"] > sweep["members"][0]["flops"]  # wider
    assert_nothing_stored(api)


def test_dry_run_over_a_limit_is_the_413_a_submit_would_get(api):
    body = HOSTILE["ResNet-18 of width 512"][0]
    dry = api.client.post("/v1/experiments?dry_run=true", json=body)
    real = api.client.post("/v1/experiments", json=body)
    assert dry.status_code == real.status_code == 413 and dry.json() == real.json()
    assert_nothing_stored(api)


def test_gpu_jobs_are_admitted_under_the_gpu_queue_limits(make_api):
    api = make_api(max_gflop=0.5, gpu_max_gflop=1e6, gpu_max_peak_gb=80)
    body = spec(**{"learner.width": 4096})
    assert api.client.post("/v1/experiments", json=body).status_code == 413
    r = api.client.post("/v1/experiments?dry_run=true", json={**body, "device": "cuda"})
    assert r.status_code == 200
    assert r.json()["queue"] == "gpu" and r.json()["limits"]["flops"] == 1e15
    assert r.json()["limits"]["peak_bytes"] == 80e9
    assert api.client.post("/v1/experiments", json={**body, "device": "cuda"}).status_code == 202


def test_queue_limits_fall_back_to_the_server_wide_ones(monkeypatch):
    from service.admission import limits_for

    monkeypatch.setenv("ADVLAB_MAX_PEAK_GB", "2")
    monkeypatch.setenv("ADVLAB_CPU_MAX_GFLOP", "7")
    settings = Settings()
    cpu = limits_for(settings.resolved_cpu_queue, settings)
    gpu = limits_for(settings.gpu_queue, settings)
    assert (cpu.peak_bytes, cpu.flops, cpu.stored_bytes) == (2e9, 7e9, 1e9)
    assert (gpu.peak_bytes, gpu.flops) == (2e9, 50_000e9)
    assert cpu.settings_used["flops"] == "cpu_max_gflop"
    assert gpu.settings_used["flops"] == "max_gflop"


def test_a_retry_is_admitted_under_the_current_limits(make_api):
    from tests.service.api_support import run_fake_worker

    api = make_api()
    exp_id = api.client.post("/v1/experiments", json=spec()).json()["id"]
    run_fake_worker(api.store, exp_id, finish="failed")
    api.client.app.state.settings.max_gflop = 1e-9
    r = api.client.post(f"/v1/experiments/{exp_id}/retry")
    assert r.status_code == 413 and r.json()["detail"][0]["type"] == "limit.max_gflop"
    assert api.rows() == 1


@pytest.mark.postgres
def test_refusals_leave_no_row_and_no_message_on_postgresql(make_api, pg_database):
    api = make_api(pg_database())
    for name in ("ResNet-18 of width 512", "PGD with 10^9 steps", "64 seeds of a 120 MB data set"):
        body, status, loc = HOSTILE[name]
        r = api.client.post("/v1/experiments", json=body)
        assert r.status_code == status and loc in [i["loc"] for i in r.json()["detail"]]
    huge = {"base": spec(), "grid": {a: list(range(2, 12)) for a in
                                     ["learner.width", "data.d", "data.k", "data.n_train"]}}
    assert api.client.post("/v1/sweeps", json=huge).status_code == 413
    assert_nothing_stored(api)
    assert api.client.post("/v1/experiments", json=spec()).status_code == 202
    assert api.rows() == 1 and len(api.messages()) == 1


def test_a_spec_the_cost_model_cannot_price_is_a_422_not_a_500():
    """A safety net under the validators: a combination they refuse (a cnn learner on vector
    data, whose cost function needs (C, H, W) inputs), built without them, is a field error."""
    from advcore.spec import CNN, ExperimentSpec
    from service.admission import price
    from service.errors import FieldError

    spec = ExperimentSpec().model_copy(update={"learner": CNN()})  # bypasses the validators
    with pytest.raises(FieldError) as info:
        price(spec)
    assert info.value.loc == ["body"] and "cannot be priced" in info.value.msg


def test_a_submit_and_each_sweep_member_are_resolved_once(make_api, monkeypatch):
    """Resolved once, a spec is priced, hashed and stored as it is."""
    from advcore.spec import ExperimentSpec

    api = make_api()
    calls = []
    resolve = ExperimentSpec.resolve
    monkeypatch.setattr(ExperimentSpec, "resolve", lambda self: calls.append(1) or resolve(self))
    r = api.client.post("/v1/sweeps?dry_run=true", json={
        "base": spec(), "grid": {"learner.width": [8, 16, 32]}, "seeds": [0, 1],
        "seed_mode": "separate"})
    assert r.status_code == 200 and r.json()["n_members"] == 6
    assert len(calls) == 6
    calls.clear()
    assert api.client.post("/v1/experiments", json=spec()).status_code == 202
    assert len(calls) == 1 and api.rows() == 1

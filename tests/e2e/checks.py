"""What a finished run must give back over HTTP, shared by the embedded and lab-stack tests."""

from __future__ import annotations

from collections import Counter

from devtools.stack import Stack, series_by_key


def evaluation_steps(spec: dict) -> list[int]:
    """Epoch 0, every `every`-th epoch and the last one (advcore.schedule.evaluation_plan)."""
    epochs, every = spec["training"]["epochs"], spec["evaluation"]["every"]
    return sorted({0, *range(every, epochs + 1, every), epochs})


def expected_metric_names(spec: dict) -> set[str]:
    k = spec["data"]["k"]
    names = {"train/loss", "test/loss", "train/clean_accuracy", "test/clean_accuracy",
             "weights/norm_mean", "weights/norm_max", *(f"corr/cluster/{j}" for j in range(k))}
    for attack in spec["evaluation"]["attacks"]:
        label = attack.get("name") or f"{attack['kind']}_{attack.get('norm', 'l2')}"
        names |= {f"test/robust_accuracy/{label}@{r:g}" for r in attack["radii"]}
        # the minimum over every attack of the same threat (advcore.summary)
        names |= {f"test/robust_accuracy/min_{attack.get('norm', 'l2')}@{r:g}"
                  for r in attack["radii"]}
    return names


def assert_points_complete(stack: Stack, experiment_id: str, spec: dict) -> dict:
    """Every expected series has each evaluation step exactly once: none missing, none twice."""
    with stack.client() as client:
        metrics = client.get(f"/v1/experiments/{experiment_id}/metrics").json()
    series = series_by_key(metrics)
    seeds = spec.get("seeds") or [spec.get("seed", 0)]
    steps = evaluation_steps(spec)
    for name in expected_metric_names(spec):
        for seed in seeds:
            assert (name, seed) in series, f"missing series {name} seed {seed}: {sorted(series)}"
            got = [step for step, _ in series[(name, seed)]]
            duplicated = [s for s, n in Counter(got).items() if n > 1]
            assert not duplicated, f"{name}: steps stored twice {duplicated}"
            # step 0 records the initial state without attacks (advcore.evaluate)
            want = steps[1:] if "/robust_accuracy/" in name else steps
            assert got == want, f"{name} seed {seed}: steps {got} != {want}"
    with stack.client() as client:
        corr = client.get(f"/v1/experiments/{experiment_id}/correlations").json()
    assert corr["matrices"] == {"cosine/cluster": steps}  # one matrix per evaluation step
    return series


def assert_full_run_results(stack: Stack, experiment_id: str, spec: dict, body: dict) -> None:
    """Metrics, correlation trajectories, one full matrix and downsampling, with api.md names."""
    summary = body["summary"]
    assert set(summary["clean_accuracy"]) == {"train", "test"}
    assert summary["clean_accuracy"]["train"] > 0.9  # 4 well separated clusters: easy to fit
    radii = {r["radius"] for r in summary["robust_accuracy"]}
    assert radii == {float(r) for a in spec["evaluation"]["attacks"] for r in a["radii"]}
    assert body["progress"]["step"] == body["progress"]["total"] == spec["training"]["epochs"]

    series = assert_points_complete(stack, experiment_id, spec)
    loss = [value for _, value in series[("train/loss", spec["seed"])]]
    assert loss[-1] < loss[0]  # training made progress

    k, width = spec["data"]["k"], spec["learner"]["width"]
    with stack.client() as client:
        corr = client.get(f"/v1/experiments/{experiment_id}/correlations").json()
        names = {s["name"] for s in corr["series"]}
        assert names == {f"corr/cluster/{j}" for j in range(k)}
        assert corr["matrices"]["cosine/cluster"] == evaluation_steps(spec)
        for s in corr["series"]:
            assert all(-1.0 <= v <= 1.0 for _, v in s["points"])

        last = evaluation_steps(spec)[-1]
        matrix = client.get(f"/v1/experiments/{experiment_id}/correlations",
                            params={"step": last, "name": "cosine/cluster"}).json()
        assert (matrix["rows"], matrix["cols"], matrix["step"]) == (width, k, last)
        assert len(matrix["values"]) == width and all(len(row) == k for row in matrix["values"])
        # the summary holds the final matrix's per-cluster maxima, the matrix itself stays here
        assert "cosine_matrix" not in summary
        maxima = [max(col) for col in zip(*matrix["values"])]
        assert max(abs(a - b) for a, b in zip(maxima, summary["correlations"]["cluster"])) < 1e-5

        full = series[("train/loss", spec["seed"])]
        down = client.get(f"/v1/experiments/{experiment_id}/metrics",
                          params={"names": "train/loss", "max_points": 4}).json()
        (only,) = down["series"]
        points = [tuple(p) for p in only["points"]]
        assert 2 <= len(points) <= 4 < len(full)
        assert points[0] == full[0] and points[-1] == full[-1]

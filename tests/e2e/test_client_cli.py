"""The Python client and the `advlab` CLI against a REAL server and worker (uvicorn + a Celery
worker process, embedded SQLite + filesystem broker): submit → wait → DataFrame, plots,
export, templates, and the CLI's exit codes (0 ok, 1 job failed, 2 usage / invalid spec)."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys

import pandas as pd
import pytest

from client.api import AdvlabError, Client, JobFailed
from tests.e2e.checks import evaluation_steps, expected_metric_names
from devtools.stack import REPO, launch_stack, tiny_spec

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    s = launch_stack(tmp_path_factory.mktemp("client"), {}, workers=1)
    yield s
    s.close()


@pytest.fixture
def client(stack):
    with Client(stack.base_url) as c:
        yield c


def advlab(stack, *args: str, env_url: bool = False) -> subprocess.CompletedProcess:
    """Run the CLI as a user would (a separate process), against the stack's server."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    env.pop("ADVLAB_URL", None)
    argv = [sys.executable, "-m", "client.cli", *args]
    if env_url:
        env["ADVLAB_URL"] = stack.base_url
    else:
        argv += ["--server", stack.base_url]
    return subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)


def test_client_submit_wait_gives_a_dataframe_with_the_expected_metric_names(client, stack):
    spec = tiny_spec(name="client e2e", epochs=8, every=2, seed=1)
    exp = client.submit(spec)
    info = exp.wait(timeout_s=120)
    assert info["status"] == "succeeded" and exp.status == "succeeded"
    frame = exp.metrics()
    assert list(frame.columns) == ["name", "seed", "step", "value"]
    assert set(frame["name"]) == expected_metric_names(spec)
    assert set(frame["seed"]) == {1}
    loss = frame[frame["name"] == "train/loss"].sort_values("step")
    assert loss["step"].tolist() == evaluation_steps(spec)
    assert loss["value"].iloc[-1] < loss["value"].iloc[0]
    only = exp.metrics(names=["test/clean_accuracy"])
    assert set(only["name"]) == {"test/clean_accuracy"}
    assert exp.summary.clean_accuracy.train > 0.9


def test_client_reads_matrices_correlations_plots_and_exports(client, stack, tmp_path):
    spec = tiny_spec(name="client artefacts", epochs=6, every=3)
    exp = client.submit(spec)
    exp.wait(timeout_s=120)
    cos = exp.cosine_matrix()
    assert cos.shape == (spec["learner"]["width"], spec["data"]["k"])
    assert cos.attrs["name"] == "cosine/cluster" and cos.attrs["step"] == 6
    assert list(cos.columns) == [f"mu_{j}" for j in range(spec["data"]["k"])]
    corr = exp.correlations()
    assert set(corr["name"]) == {f"corr/cluster/{j}" for j in range(spec["data"]["k"])}
    assert exp.plot("learning_curves", tmp_path / "lc.png").startswith(PNG)
    assert b"<svg" in exp.plot("cosine", fmt="svg")[:2000]
    exported = pd.read_parquet(exp.export(tmp_path / "all.parquet"))
    assert len(exported) == len(exp.metrics())
    with pytest.raises(AdvlabError) as unknown:
        exp.plot("no_such_plot")
    assert unknown.value.status_code == 404


def test_client_submit_by_template_name_applies_dotted_overrides(client):
    exp = client.submit("quickstart", **{"training.epochs": 3, "data.n_train": 100,
                                         "evaluation.attacks": []})
    info = exp.wait(timeout_s=120)
    assert info["spec"]["training"]["epochs"] == 3
    assert info["spec"]["data"]["n_train"] == 100
    assert info["spec"]["name"] == client.template("quickstart")["spec"]["name"]


def test_client_invalid_override_raises_the_servers_422_with_the_field_path(client):
    with pytest.raises(AdvlabError) as bad:
        client.submit("quickstart", **{"data.d": -3})
    assert bad.value.status_code == 422
    assert "data.d" in bad.value.message


def test_client_wait_raises_job_failed_carrying_the_stored_error(client):
    # valid spec, but MNIST's files are not on disk: the worker fails it and stores why
    exp = client.submit(tiny_spec(name="will fail"), **{"data": {"kind": "image",
                                                                 "dataset": "mnist"}})
    with pytest.raises(JobFailed) as failed:
        exp.wait(timeout_s=120)
    assert failed.value.info["status"] == "failed"
    assert "mnist" in failed.value.message.lower()


def test_cli_submit_with_set_and_wait_exits_0_and_results_are_readable(stack, tmp_path):
    spec_path = tmp_path / "spec.json"
    spec_path.write_text(json.dumps(tiny_spec(name="cli e2e", epochs=20, every=5)))
    run = advlab(stack, "submit", str(spec_path), "--set", "training.epochs=4",
                 "--set", "tags=[\"cli\", \"e2e\"]", "--wait", "--quiet")
    assert run.returncode == 0, run.stderr
    experiment_id = run.stdout.strip().splitlines()[-1]
    info = stack.get(experiment_id)
    assert info["status"] == "succeeded"
    assert info["spec"]["training"]["epochs"] == 4 and info["tags"] == ["cli", "e2e"]

    shown = advlab(stack, "show", experiment_id, env_url=True)
    assert shown.returncode == 0 and "succeeded" in shown.stdout and "test/clean_accuracy" in shown.stdout
    metrics = advlab(stack, "metrics", experiment_id, "--csv", "--names", "train/loss")
    rows = list(csv.DictReader(io.StringIO(metrics.stdout)))
    assert metrics.returncode == 0 and [int(r["step"]) for r in rows] == [0, 4]
    assert {r["name"] for r in rows} == {"train/loss"}
    plot = advlab(stack, "plot", experiment_id, "robust_vs_radius", "-o", str(tmp_path / "r.png"))
    assert plot.returncode == 0 and (tmp_path / "r.png").read_bytes().startswith(PNG)
    export = advlab(stack, "export", experiment_id, "-o", str(tmp_path / "m.csv"))
    assert export.returncode == 0
    assert pd.read_csv(tmp_path / "m.csv")["experiment_id"].eq(experiment_id).all()
    listed = advlab(stack, "ls", "--tag", "cli", "--json")
    assert listed.returncode == 0 and [e["id"] for e in json.loads(listed.stdout)] == [experiment_id]


def test_cli_invalid_set_prints_the_servers_422_message_and_exits_2(stack):
    run = advlab(stack, "submit", "quickstart", "--set", "training.mode=sideways")
    assert run.returncode == 2
    assert "training.mode" in run.stderr and "422" in run.stderr
    assert run.stdout.strip() == ""  # nothing was submitted


def test_cli_usage_errors_exit_2(stack):
    assert advlab(stack, "submit", "quickstart", "--set", "no-equals-sign").returncode == 2
    assert advlab(stack, "submit", "missing.json").returncode == 2
    assert advlab(stack, "show", "no-such-id").returncode == 2
    assert advlab(stack, "plot", "x", "learning_curves").returncode == 2  # -o is required


def test_cli_failed_job_with_wait_exits_1(stack):
    run = advlab(stack, "submit", "quickstart", "--set", 'data={"kind": "image", "dataset": "mnist"}',
                 "--wait", "--quiet")
    assert run.returncode == 1, run.stderr
    assert "failed" in run.stderr


def test_cli_templates_lists_every_template_and_prints_one_spec(stack):
    from service.templates import TEMPLATES

    listed = advlab(stack, "templates")
    assert listed.returncode == 0
    assert all(name in listed.stdout for name in TEMPLATES)
    one = advlab(stack, "templates", "patch_adversarial")
    assert json.loads(one.stdout)["training"]["mode"] == "adversarial"


def test_cli_sweep_waits_and_prints_mean_and_std_per_grid_point(stack, tmp_path):
    spec_path = tmp_path / "base.json"
    spec_path.write_text(json.dumps(tiny_spec(name="cli sweep", epochs=4, every=2)))
    run = advlab(stack, "sweep", str(spec_path), "--grid", "training.labels=binary,fine",
                 "--seeds", "0,1", "--wait", "--quiet")
    assert run.returncode == 0, run.stderr
    assert "training.labels=binary" in run.stdout and "training.labels=fine" in run.stdout
    assert "test/robust_accuracy/pgd_l2@2" in run.stdout


def test_client_sweep_aggregate_has_mean_and_std_for_each_grid_point(client, tmp_path):
    sweep = client.sweep(tiny_spec(name="client sweep", epochs=4, every=2),
                         {"learner.width": [4, 8]}, seeds=[0, 1, 2])
    sweep.wait(timeout_s=180)
    table = sweep.aggregate()
    clean = table[table["metric"] == "test/clean_accuracy"]
    assert sorted(clean["learner.width"]) == [4, 8]
    assert clean["n"].tolist() == [3, 3]
    assert clean["mean"].between(0, 1).all() and clean["std"].notna().all()
    exported = pd.read_csv(sweep.export(tmp_path / "sweep.csv"))
    assert set(exported["learner.width"]) == {4, 8} and set(exported["seed"]) == {0, 1, 2}
    assert sweep.plot("test/clean_accuracy").startswith(PNG)


def test_cli_and_client_send_the_api_token_of_a_tokens_server(tmp_path):
    """ADVLAB_AUTH=tokens: without a token the CLI exits 2 with a hint; with ADVLAB_TOKEN (or
    Client(token=...)) the same commands go through."""
    lab = launch_stack(tmp_path / "auth", {"ADVLAB_AUTH": "tokens"}, workers=0)
    try:
        admin = lambda *a: subprocess.run(  # noqa: E731  (server-side admin commands)
            [sys.executable, "-m", "client.cli", *a], cwd=REPO, env=lab.env,
            capture_output=True, text=True, timeout=60)
        assert admin("users", "add", "alice").returncode == 0
        created = admin("tokens", "create", "alice")
        assert created.returncode == 0, created.stderr
        token = created.stdout.strip().splitlines()[0]

        refused = advlab(lab, "templates")
        assert refused.returncode == 2 and "401" in refused.stderr
        assert "ADVLAB_TOKEN" in refused.stderr
        env = {**os.environ, "ADVLAB_URL": lab.base_url, "ADVLAB_TOKEN": token}
        ok = subprocess.run([sys.executable, "-m", "client.cli", "submit", "quickstart"],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
        assert ok.returncode == 0, ok.stderr
        with Client(lab.base_url, token=token) as c:
            assert c.experiment(ok.stdout.strip()).status == "queued"  # no worker: stays queued
        with Client(lab.base_url) as anonymous, pytest.raises(AdvlabError) as no_token:
            anonymous.templates()
        assert no_token.value.status_code == 401
    finally:
        lab.close()


def test_client_estimates_a_spec_and_a_sweep_without_submitting(client):
    before = len(list(client.experiments()))
    est = client.estimate("quickstart")
    assert est["dry_run"] is True and est["queue"] == "cpu"
    assert 0 < est["flops"] < est["limits"]["flops"] and est["dominant"]["flops"]
    sweep = client.estimate_sweep("quickstart", {"learner.width": [4, 64]}, seeds=[0, 1])
    assert sweep["n_members"] == 2
    assert sweep["members"][1]["flops"] > sweep["members"][0]["flops"]
    with pytest.raises(AdvlabError) as info:  # ResNet-18 of width 512 on the CPU queue
        client.estimate({"data": {"kind": "image"},
                         "learner": {"kind": "resnet18", "width": 512}})
    assert info.value.status_code == 413 and "learner.width" in info.value.message
    assert len(list(client.experiments())) == before


def test_cli_shows_the_estimate_before_a_sweep_and_refuses_an_oversized_one(stack, tmp_path):
    spec_path = tmp_path / "base.json"
    spec_path.write_text(json.dumps(tiny_spec(name="cli estimate", epochs=4, every=2)))
    dry = advlab(stack, "sweep", str(spec_path), "--grid", "learner.width=4,8", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "sweep estimate: 2 members" in dry.stderr and "learner.width=8" in dry.stderr
    assert dry.stdout.strip() == ""  # no sweep id: nothing submitted
    one = advlab(stack, "estimate", "quickstart")
    assert one.returncode == 0 and "peak memory" in one.stderr and "compute" in one.stderr
    axes = [f"--grid=data.{f}={','.join(map(str, range(2, 12)))}" for f in ("d", "k", "n_train",
                                                                            "n_test")]
    huge = advlab(stack, "sweep", str(spec_path), *axes)
    assert huge.returncode == 2 and "max_sweep_members" in huge.stderr and "413" in huge.stderr
    over = advlab(stack, "submit", "quickstart", "--set", 'data={"kind": "image"}',
                  "--set", 'learner={"kind": "resnet18", "width": 512}')
    assert over.returncode == 2 and "413" in over.stderr and "lower learner.width" in over.stderr
    assert over.stdout.strip() == ""


def test_wait_follows_the_event_stream_and_reads_the_experiment_once_at_its_end(client, stack):
    requested: list[str] = []
    client._http.event_hooks["request"].append(lambda request: requested.append(request.url.path))
    exp = client.submit(tiny_spec(name="wait on events", epochs=30, every=10, seed=2))
    info = exp.wait(timeout_s=120)
    assert info["status"] == "succeeded"
    reads = [p for p in requested if p == f"/v1/experiments/{exp.id}"]
    assert f"/v1/experiments/{exp.id}/events" in requested
    assert len(reads) == 1, requested  # no polling: one read once the stream said `end`


def test_wait_on_a_queued_job_raises_timeout_error_at_its_deadline(client, stack):
    # 100,000 epochs on 2,000 points: minutes even on a fast machine, so the 1 s deadline comes first
    exp = client.submit(tiny_spec(name="waits long", epochs=100_000, every=50_000, seed=4,
                                  n=2000))
    try:
        with pytest.raises(TimeoutError):
            exp.wait(timeout_s=1.0)
        assert exp.status in ("queued", "running")
    finally:
        exp.cancel()

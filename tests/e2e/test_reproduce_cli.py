"""`advlab reproduce feature_averaging --quick` against a REAL server and worker (embedded
stack: SQLite + filesystem broker): the reproduction runs as a sweep on the worker, the CLI
waits, prints the verdict table and writes verdict.json (every claim holds) and figure.png."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from devtools.stack import launch_stack

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_cli_reproduce_quick_feature_averaging_on_a_real_server(tmp_path_factory, tmp_path):
    from matplotlib.image import imread

    stack = launch_stack(tmp_path_factory.mktemp("reproduce"), {}, workers=1)
    try:
        env = {**os.environ, "ADVLAB_URL": stack.base_url, "COLUMNS": "200"}
        listed = subprocess.run([sys.executable, "-m", "client.cli", "reproduce", "--list"],
                                cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
        assert listed.returncode == 0 and "feature_averaging" in listed.stdout, listed.stderr
        out = tmp_path / "fa"
        run = subprocess.run([sys.executable, "-m", "client.cli", "reproduce",
                              "feature_averaging", "--quick", "--out", str(out),
                              "--timeout", "600"],
                             cwd=REPO, env=env, capture_output=True, text=True, timeout=660)
        assert run.returncode == 0, run.stdout + run.stderr + stack.log_text()[-4000:]
        assert "binary_cliff" in run.stdout and "holds" in run.stdout
        verdict = json.loads((out / "verdict.json").read_text())
        assert verdict["name"] == "feature_averaging" and verdict["size"] == "quick"
        assert verdict["holds"], verdict["claims"]
        image = imread(io.BytesIO((out / "figure.png").read_bytes()), format="png")
        assert image.shape[1] > 1000
        unknown = subprocess.run([sys.executable, "-m", "client.cli", "reproduce", "nope",
                                  "--quick"], cwd=REPO, env=env, capture_output=True,
                                 text=True, timeout=60)
        assert unknown.returncode == 2 and "unknown reproduction" in unknown.stderr
    finally:
        stack.close()

"""The CLI without a server: help everywhere, usage errors exit 2, an unreachable server exit 1."""

from __future__ import annotations

import subprocess
import sys

import pytest

from devtools.stack import REPO, free_port

SERVER_COMMANDS = ["submit", "ls", "show", "cancel", "metrics", "plot", "export", "templates",
                   "compare", "sweep"]


def advlab(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "client.cli", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=60)


def test_every_server_command_has_help_naming_the_server_and_token_options():
    for command in SERVER_COMMANDS:
        run = advlab(command, "--help")
        assert run.returncode == 0, (command, run.stderr)
        assert "--server" in run.stdout and "--token" in run.stdout, command


def test_an_unreachable_server_exits_1_with_a_readable_message():
    run = advlab("ls", "--server", f"http://127.0.0.1:{free_port()}")
    assert run.returncode == 1
    assert "cannot reach the advlab server" in run.stderr


@pytest.mark.parametrize("args", [
    ["submit"],                                         # missing SPEC
    ["plot", "ID", "cosine"],                           # -o is required
    ["export", "ID", "-o", "out.xlsx"],                 # csv or parquet only
    ["compare", "A", "B", "--plot", "robust_vs_radius"],  # --plot needs --output
    ["ls", "--where", "data.kind"],                     # not PATH=VALUE
])
def test_usage_errors_exit_2_before_any_request(args):
    run = advlab(*args, "--server", f"http://127.0.0.1:{free_port()}")
    assert run.returncode == 2, run.stderr
    assert "cannot reach" not in run.stderr

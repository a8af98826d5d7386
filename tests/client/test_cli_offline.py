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


def test_long_metric_names_wrap_in_a_narrow_terminal_and_keep_their_radius():
    from rich.console import Console

    from client.remote import FOLD
    from rich.table import Table

    table = Table(FOLD("metric"), "mean")
    table.add_row("test/robust_accuracy/pgd_l2@10.5", "0.25")
    narrow = Console(width=30, record=True)
    narrow.print(table)
    text = narrow.export_text()
    assert "…" not in text and "@10.5" in "".join(line.strip("│ ") for line in text.splitlines())


def test_wide_is_a_global_option():
    run = advlab("--wide", "ls", "--server", f"http://127.0.0.1:{free_port()}")
    assert run.returncode == 1 and "cannot reach" in run.stderr

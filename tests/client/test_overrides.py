"""Client-side pieces that need no server: `--set` parsing, dotted-path edits, light imports."""

from __future__ import annotations

import subprocess
import sys

import pytest

from client.overrides import parse_override, set_path
from devtools.stack import REPO


@pytest.mark.parametrize("text, expected", [
    ("training.mode=adversarial", ("training.mode", "adversarial")),
    ("training.epochs=50", ("training.epochs", 50)),
    ("training.optimizer.lr=0.5", ("training.optimizer.lr", 0.5)),
    ("training.batch_size=null", ("training.batch_size", None)),
    ("learner.widths=[16, 32]", ("learner.widths", [16, 32])),
    ("name=a=b", ("name", "a=b")),
])
def test_override_values_parse_as_json_when_they_can(text, expected):
    assert parse_override(text) == expected


@pytest.mark.parametrize("text", ["training.mode", "=3", ""])
def test_override_without_path_and_equals_is_refused(text):
    with pytest.raises(ValueError, match="PATH=VALUE"):
        parse_override(text)


def test_set_path_creates_objects_and_indexes_lists():
    spec = {"evaluation": {"attacks": [{"kind": "pgd", "steps": 20}]}}
    set_path(spec, "training.optimizer.lr", 0.1)
    set_path(spec, "evaluation.attacks.0.steps", 5)
    assert spec == {"evaluation": {"attacks": [{"kind": "pgd", "steps": 5}]},
                    "training": {"optimizer": {"lr": 0.1}}}
    with pytest.raises(ValueError, match="not an object"):
        set_path({"seed": 0}, "seed.x", 1)


def test_importing_the_client_and_cli_loads_neither_torch_nor_pandas():
    code = ("import sys, client.api, client.cli, client.remote, client.sweep; "
            "print(sorted(m for m in ('torch', 'pandas', 'advcore') if m in sys.modules))")
    run = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"

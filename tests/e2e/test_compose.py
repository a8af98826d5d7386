"""docker-compose.yml must be accepted by Docker Compose (no engine runs here: `config` only).

Uses `docker compose` (v2 plugin) or else `docker-compose` (v1, Debian's package). With CI=true a
missing Compose fails the run; elsewhere the test skips.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import IN_CI

REPO = Path(__file__).resolve().parents[2]


def compose_command() -> list[str]:
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True)
        if probe.returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    message = "neither `docker compose` nor `docker-compose` is installed"
    if IN_CI:
        pytest.fail(message + " (CI=true)")
    pytest.skip(message)


def run_config(compose_file: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([*compose_command(), "-f", str(compose_file), "config", *extra],
                          cwd=compose_file.parent, capture_output=True, text=True, timeout=60)


def test_compose_file_is_accepted_by_docker_compose_config():
    checked = run_config(REPO / "docker-compose.yml", "-q")
    assert checked.returncode == 0, checked.stderr


def test_compose_file_defines_the_lab_services_with_gpu_workers_and_healthchecks():
    rendered = run_config(REPO / "docker-compose.yml")
    assert rendered.returncode == 0, rendered.stderr
    text = rendered.stdout
    for service in ("api", "worker", "redis", "postgres", "migrate"):
        assert f"\n  {service}:\n" in text, f"service {service} missing"
    assert "driver: nvidia" in text and "- gpu" in text  # the worker's GPU reservation
    assert text.count("healthcheck:") >= 3  # postgres, redis, api
    assert "ADVLAB_DATABASE_URL: postgresql+psycopg://advlab:" in text
    assert "ADVLAB_BROKER_URL: redis://redis:6379/0" in text
    assert "condition: service_healthy" in text
    for volume in ("pgdata", "redisdata", "advlabdata"):
        assert f"\n  {volume}:" in text.split("\nvolumes:", 1)[1]


def test_compose_config_rejects_a_broken_file(tmp_path):
    broken = tmp_path / "docker-compose.yml"
    broken.write_text((REPO / "docker-compose.yml").read_text().replace(
        "    restart: unless-stopped", "    restart: [not, a, string]", 1))
    assert run_config(broken, "-q").returncode != 0  # the check above can fail

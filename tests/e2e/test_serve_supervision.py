"""`advlab serve` supervises its children: a killed API comes back; an API that cannot come back
(its port taken) makes serve stop everything and exit non-zero with the reason."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx

from devtools.poll import poll
from devtools.stack import REPO, free_port


def _children(pid: int) -> dict[int, str]:
    """Direct children of `pid` with their command lines, from /proc (Linux)."""
    kids = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                cmdline = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                kids[int(stat.parent.name)] = cmdline
        except (OSError, ValueError):
            continue
    return kids


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _api_pid(serve_pid: int) -> int | None:
    return next((pid for pid, cmd in _children(serve_pid).items() if "uvicorn" in cmd), None)


def _wait_healthy(url: str, timeout: float, serve: subprocess.Popen) -> None:
    def healthy() -> bool:
        assert serve.poll() is None, "advlab serve exited"
        return httpx.get(url + "/v1/health", timeout=2).status_code == 200

    poll(healthy, timeout=timeout, every=0.3, ignore=httpx.HTTPError, message=f"{url} not healthy")


def test_a_killed_api_is_restarted_and_one_that_cannot_restart_stops_serve_non_zero(tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ADVLAB_")}
    env.update({"ADVLAB_HOME": str(tmp_path / "home"), "ADVLAB_DEVICE": "cpu",
                "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"})
    log_path = tmp_path / "serve.log"
    with open(log_path, "wb") as log:
        serve = subprocess.Popen(
            [sys.executable, "-m", "client.cli", "serve", "--port", str(port), "--workers", "1"],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    blocker = None
    try:
        _wait_healthy(url, 120, serve)
        first = _api_pid(serve.pid)
        assert first is not None
        os.kill(first, signal.SIGKILL)  # the API dies: serve starts a new one
        _wait_healthy(url, 120, serve)
        second = _api_pid(serve.pid)
        assert second not in (None, first)

        before = list(_children(serve.pid))  # the API and the worker
        os.kill(second, signal.SIGKILL)  # and now its port is taken: every restart fails
        blocker = socket.socket()
        blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # past TIME_WAITs, not a listener
        # the killed API's socket closes when it has exited (a new API needs seconds of
        # imports before it binds: we are first)
        poll(lambda: blocker.bind(("127.0.0.1", port)) is None, timeout=5, every=0.01,
             ignore=OSError, message="the killed API kept its port")
        blocker.listen()
        code = serve.wait(timeout=240)  # polling deadline: 5 young deaths with back-off
        assert code != 0
        text = log_path.read_text(errors="replace")
        assert "advlab serve: the API exited 5 times within 60 s of starting" in text
        assert not [pid for pid in before if _alive(pid)]  # the worker was stopped too
    finally:
        if serve.poll() is None:
            serve.kill()
            serve.wait()
        if blocker is not None:
            blocker.close()

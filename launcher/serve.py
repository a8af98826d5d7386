"""`advlab serve`: the whole embedded server from one command.

Migrates the database, then supervises child processes: uvicorn with the API and `workers`
real Celery workers, plus a reaper thread here. Children run in their own session (a Ctrl-C in
the terminal reaches only this process, which then stops them in order) and die with this
process (Linux PR_SET_PDEATHSIG), so nothing is left behind. A worker that dies is restarted (its
job comes back through the reaper); if the API dies, everything stops.
"""

from __future__ import annotations

import ctypes
import logging
import signal
import subprocess
import sys
import threading
import time

from lab.config import Settings, get_settings

log = logging.getLogger("advlab.serve")

STOP_GRACE_S = 15.0  # warm shutdown: a running job is handed back to the queue within a step


try:  # loaded here, not in the forked child (dlopen after fork with threads can deadlock)
    _LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None
except OSError:
    _LIBC = None


def _die_with_parent() -> None:  # runs in the child between fork and exec
    if _LIBC is not None:
        _LIBC.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _spawn(argv: list[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(argv, env=env, start_new_session=True,
                            preexec_fn=_die_with_parent if _LIBC is not None else None)


def proxy_args(trusted_proxies: str) -> list[str]:
    """uvicorn's forwarded-header trust: only the configured proxies (its default trusts any
    X-Forwarded-For sent from 127.0.0.1, which lets a local caller pose as any address)."""
    if not trusted_proxies.strip():
        return ["--no-proxy-headers"]
    return ["--proxy-headers", "--forwarded-allow-ips", trusted_proxies.strip()]


def api_command(host: str, port: int, trusted_proxies: str = "") -> list[str]:
    return [sys.executable, "-m", "uvicorn", "service.main:app", "--host", host, "--port", str(port),
            "--log-level", "info", "--no-access-log", *proxy_args(trusted_proxies)]


def stop_processes(procs: list[subprocess.Popen], grace_s: float = STOP_GRACE_S) -> None:
    """SIGTERM all, wait up to `grace_s`, then SIGKILL whatever is left."""
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    deadline = time.monotonic() + grace_s
    for proc in procs:
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class _Restart:
    """Restart a dead worker at once, unless it keeps dying young (then back off up to 60 s)."""

    def __init__(self) -> None:
        self.started_at = time.monotonic()
        self.failures = 0
        self.not_before: float | None = None

    def due(self, returncode: int | None) -> bool:
        now = time.monotonic()
        if self.not_before is None:
            young = now - self.started_at < 10.0
            self.failures = self.failures + 1 if young else 0
            self.not_before = now + (min(60.0, 2.0 ** self.failures) if self.failures else 0.0)
        return now >= self.not_before

    def started(self) -> None:
        self.started_at, self.not_before = time.monotonic(), None


def serve(host: str | None = None, port: int | None = None, workers: int = 1, *,
          settings: Settings | None = None) -> int:
    """Run until Ctrl-C / SIGTERM (returns 0) or until the API process exits (its code)."""
    from lab.store.migrate import upgrade
    from worker.launch import ensure_home, settings_env, worker_command
    from worker.reaper import start_reaper

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    settings = settings or get_settings()
    host, port = host or settings.host, port or settings.port
    ensure_home(settings)
    upgrade("head", url=settings.resolved_database_url)
    env = settings_env(settings)

    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    api = _spawn(api_command(host, port, settings.trusted_proxies), env)
    worker_procs = [_spawn(worker_command(settings=settings), env) for _ in range(max(0, workers))]
    reaper = start_reaper(settings)
    print(f"advlab: API on http://{host}:{port} (docs: /docs), {len(worker_procs)} worker(s), "
          f"data in {settings.home}, broker {settings.resolved_broker_url.split('@')[-1]}; "
          "Ctrl-C stops everything", flush=True)
    code = 0
    restarts = [_Restart() for _ in worker_procs]
    try:
        while not stop.wait(1.0):
            if api.poll() is not None:
                code = api.returncode or 1
                log.error("the API process exited (%s); stopping", api.returncode)
                break
            for i, proc in enumerate(worker_procs):
                if proc.poll() is not None and restarts[i].due(proc.returncode):
                    log.warning("worker %d exited (%s); starting a new one", i, proc.returncode)
                    worker_procs[i] = _spawn(worker_command(settings=settings), env)
                    restarts[i].started()
    finally:
        print("advlab: stopping (a running job goes back to the queue)", flush=True)
        reaper.stop()
        stop_processes([*worker_procs, api])
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return code

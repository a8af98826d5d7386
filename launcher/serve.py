"""`advlab serve`: the whole embedded server from one command.

Migrates the database, then supervises child processes: uvicorn with the API and `workers`
real Celery workers, plus a reaper thread here. Children run in their own session (a Ctrl-C in
the terminal reaches only this process, which then stops them in order) and die with this
process (Linux PR_SET_PDEATHSIG), so nothing is left behind. A child that dies (API or worker)
is restarted with back-off (a dead worker's job comes back through the reaper); one that keeps
dying young is given up on, and serve stops everything and exits 1 with the reason.
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


class Restarts:
    """Back-off for one supervised child: a child that ran a while is restarted at once; one that
    keeps dying young (within `young_s` of its start) waits 1, 2, 4, ... s (at most 60), and
    after `give_up_after` young deaths in a row it is not restarted any more."""

    def __init__(self, name: str, *, young_s: float = 60.0, give_up_after: int = 5) -> None:
        self.name, self.young_s, self.give_up_after = name, young_s, give_up_after
        self.started_at = time.monotonic()
        self.failures = 0
        self.not_before: float | None = None
        self.last_code: int | None = None

    def died(self, returncode: int | None) -> None:
        """Record a death (once); sets when the restart is due."""
        if self.not_before is not None:
            return
        now = time.monotonic()
        young = now - self.started_at < self.young_s
        self.failures = self.failures + 1 if young else 0
        self.last_code = returncode
        self.not_before = now + (min(60.0, 2.0 ** (self.failures - 1)) if self.failures else 0.0)

    @property
    def exhausted(self) -> bool:
        return self.failures >= self.give_up_after

    def due(self) -> bool:
        return self.not_before is not None and time.monotonic() >= self.not_before

    def started(self) -> None:
        self.started_at, self.not_before = time.monotonic(), None

    def reason(self) -> str:
        return (f"the {self.name} exited {self.failures} times within {self.young_s:g} s of "
                f"starting (last exit code {self.last_code}); not restarting it")


class Child:
    """One supervised process: how to start it, the running Popen, its restart state."""

    def __init__(self, name: str, start) -> None:
        self.name, self._start = name, start
        self.restarts = Restarts(name)
        self.proc: subprocess.Popen = start()

    def tend(self) -> str | None:
        """Restart the child if it died and its back-off is over; the reason to give up, if any."""
        if self.proc.poll() is None:
            return None
        self.restarts.died(self.proc.returncode)
        if self.restarts.exhausted:
            return self.restarts.reason()
        if self.restarts.due():
            log.warning("%s exited (%s); starting a new one", self.name, self.proc.returncode)
            try:
                self.proc = self._start()
            except OSError as exc:
                return f"could not start the {self.name}: {exc}"
            self.restarts.started()
        return None


def serve(host: str | None = None, port: int | None = None, workers: int = 1, *,
          settings: Settings | None = None) -> int:
    """Run until Ctrl-C / SIGTERM (returns 0), restarting children that die; returns 1 with the
    reason logged when one cannot be restarted."""
    from lab.store.migrate import upgrade
    from worker.launch import ensure_home, settings_env, worker_command
    from worker.placement import worker_env
    from worker.reaper import start_reaper

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    settings = settings or get_settings()
    host, port = host or settings.host, port or settings.port
    ensure_home(settings)
    upgrade("head", url=settings.resolved_database_url)
    env = settings_env(settings)
    workers = max(0, workers)

    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    children = [Child("API", lambda: _spawn(api_command(host, port, settings.trusted_proxies), env))]
    for i in range(workers):  # each with its share of the cores, and its GPU when there are several
        worker_environ = worker_env(i, workers, env)
        children.append(Child(f"worker {i}", lambda e=worker_environ: _spawn(
            worker_command(settings=settings), e)))
    reaper = start_reaper(settings)
    print(f"advlab: API on http://{host}:{port} (docs: /docs), {workers} worker(s), "
          f"data in {settings.home}, broker {settings.resolved_broker_url.split('@')[-1]}; "
          "Ctrl-C stops everything", flush=True)
    code = 0
    try:
        while not stop.wait(1.0):
            reasons = [r for r in (child.tend() for child in children) if r]
            if reasons:
                code = 1
                for reason in reasons:
                    log.error("advlab serve: %s; stopping", reason)
                    print(f"advlab serve: {reason}; stopping", file=sys.stderr, flush=True)
                break
    finally:
        print("advlab: stopping (a running job goes back to the queue)", flush=True)
        reaper.stop()
        stop_processes([child.proc for child in children[1:]] + [children[0].proc])
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return code

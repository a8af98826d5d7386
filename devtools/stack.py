"""Real processes for end-to-end tests: uvicorn with the API and `celery worker` subprocesses.

`launch_stack(root, env, workers=N)` migrates the database, starts the API on a free port and N
workers with logs in files under `root`; `Stack.close()` (fixture teardown) terminates and reaps
every process it started. Workers get OMP_NUM_THREADS=1 (two cores shared by everything).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import httpx

from devtools.poll import poll
from lab.status import TERMINAL

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tiny_spec(*, name: str = "e2e tiny", epochs: int = 20, every: int = 2, seed: int = 0,
              attacks: list[dict] | None = None, d: int = 20, k: int = 4, n: int = 200) -> dict:
    """A small feature-averaging run: d=20, k=4, n=200, one PGD attack."""
    return {
        "name": name, "tags": ["e2e"], "seed": seed, "device": "cpu",
        "data": {"kind": "multi_cluster", "d": d, "k": k, "n_train": n, "n_test": n},
        "learner": {"kind": "two_layer_relu", "width": 16},
        "training": {"epochs": epochs, "optimizer": {"kind": "gd", "lr": 1.0}},
        "evaluation": {"every": every, "record": ["correlations", "weight_norms"],
                       "attacks": attacks if attacks is not None else
                       [{"kind": "pgd", "norm": "l2", "radii": [1.0, 2.0], "steps": 5}]},
    }


@dataclass
class Stack:
    root: Path
    env: dict[str, str]
    base_url: str = ""
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    logs: dict[str, Path] = field(default_factory=dict)
    _files: list = field(default_factory=list)

    # ---------------------------------------------------------------- processes

    def _start(self, name: str, argv: list[str]) -> subprocess.Popen:
        log_path = self.root / f"{name}.log"
        out = open(log_path, "ab")
        self._files.append(out)
        proc = subprocess.Popen(argv, cwd=REPO, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
        self.procs[name], self.logs[name] = proc, log_path
        return proc

    def start_api(self) -> None:
        port = free_port()
        self.base_url = f"http://127.0.0.1:{port}"
        from launcher.serve import api_command

        self._start("api", api_command("127.0.0.1", port,
                                       self.env.get("ADVLAB_TRUSTED_PROXIES", "")))

        def answers() -> bool:
            if self.procs["api"].poll() is not None:
                raise RuntimeError("API exited:\n" + self.log_text("api"))
            return httpx.get(self.base_url + "/v1/health", timeout=2).status_code < 500

        poll(answers, timeout=60, ignore=httpx.HTTPError,
             message=lambda _: "API did not come up:\n" + self.log_text("api"))

    def start_worker(self, name: str | None = None) -> subprocess.Popen:
        name = name or f"worker{sum(1 for n in self.procs if n.startswith('worker'))}"
        argv = [sys.executable, "-m", "celery", "-A", "worker.app:celery_app", "worker",
                "-P", "solo", "-c", "1", "-Q", self.env["ADVLAB_QUEUE"],
                "-n", f"{name}-{uuid.uuid4().hex[:6]}@e2e", "--loglevel", "INFO",
                "--without-mingle", "--without-gossip", "--without-heartbeat"]
        return self._start(name, argv)

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        proc = self.procs[name]
        os.killpg(proc.pid, sig)
        proc.wait(timeout=30)

    def close(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for proc in self.procs.values():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        for f in self._files:
            f.close()

    def log_text(self, *names: str) -> str:
        chosen = names or tuple(self.logs)
        return "\n".join(f"===== {n}\n" + self.logs[n].read_text(errors="replace")
                         for n in chosen if self.logs[n].exists())

    # ---------------------------------------------------------------- HTTP

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, timeout=30)

    def submit(self, spec: dict, client: httpx.Client | None = None) -> str:
        c = client or self.client()
        response = c.post("/v1/experiments", json=spec)
        assert response.status_code == 202, response.text
        return response.json()["id"]

    def get(self, experiment_id: str) -> dict:
        response = httpx.get(f"{self.base_url}/v1/experiments/{experiment_id}", timeout=30)
        assert response.status_code == 200, response.text
        return response.json()

    def wait_for(self, experiment_id: str, statuses: Iterable[str] = TERMINAL, *,
                 timeout: float = 120, until=None) -> dict:
        """Poll until the status is one of `statuses` (and `until(body)` holds, if given)."""
        wanted = set(statuses)
        return poll(lambda: self.get(experiment_id),
                    lambda body: body["status"] in wanted and (until is None or until(body)),
                    timeout=timeout, message=lambda body: (
                        f"{experiment_id} still {(body or {}).get('status')} (progress "
                        f"{(body or {}).get('progress')}):\n{self.log_text()[-6000:]}"))


def launch_stack(root: Path, env_overrides: dict[str, str], *, workers: int) -> Stack:
    """Migrate, start the API and `workers` workers; the caller closes the stack."""
    root.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ADVLAB_")}
    env.update({"ADVLAB_HOME": str(root / "home"), "ADVLAB_DEVICE": "cpu",
                "ADVLAB_QUEUE": f"advlab-e2e-{uuid.uuid4().hex[:8]}", "OMP_NUM_THREADS": "1",
                "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"})
    env.update(env_overrides)
    migrate = subprocess.run([sys.executable, "-m", "client.cli", "migrate"], cwd=REPO, env=env,
                             capture_output=True, text=True, timeout=120)
    assert migrate.returncode == 0, migrate.stdout + migrate.stderr
    stack = Stack(root=root, env=env)
    try:
        stack.start_api()
        for _ in range(workers):
            stack.start_worker()
    except BaseException:
        stack.close()
        raise
    return stack


def series_by_key(metrics: dict) -> dict[tuple[str, int], list[tuple[int, float]]]:
    return {(s["name"], s["seed"]): [tuple(p) for p in s["points"]] for s in metrics["series"]}


def database_url(stack: Stack) -> str:
    return stack.env.get("ADVLAB_DATABASE_URL") or \
        f"sqlite:///{Path(stack.env['ADVLAB_HOME']) / 'advlab.db'}"


def add_users(stack: Stack, names: Iterable[str]) -> dict[str, dict[str, str]]:
    """Users with one token each (ADVLAB_AUTH=tokens) → their Authorization headers."""
    from lab.store import open_store
    from service.auth import generate_token, hash_token

    store = open_store(database_url(stack))
    headers = {}
    try:
        for name in names:
            store.create_user(name)
            token = generate_token()
            store.create_token(name, hash_token(token))
            headers[name] = {"Authorization": f"Bearer {token}"}
    finally:
        store.close()
    return headers

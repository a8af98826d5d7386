"""Broker and database faults with real services and real processes.

- Redis: a PRIVATE `redis-server` (free port, no persistence) is the broker of an API and two
  workers; it is SIGKILLed while one job runs on each worker and more wait in the queue, then
  started again on the same port, empty. Every queued message is gone — the running jobs finish
  on their workers, and the queued rows are re-sent by the workers' reapers from the DATABASE
  (rule 2 of worker.reaper). Every job ends `succeeded` exactly once: one attempt, every
  evaluation step stored once. The machine's shared Redis on 6379 is never touched.
- PostgreSQL: the API reaches its own database through a TCP proxy in this process. Cutting the
  proxy (live connections closed, new ones refused) makes the API answer 503 with Retry-After on
  every database request (not 500); restoring it brings 200s back in the same API process (no
  restart: pool_pre_ping drops the dead pooled connections). pg_terminate_backend of every
  backend of that database is survived without a single error. The shared server is never stopped.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from devtools.poll import poll
from devtools.services import throwaway_pg_database
from tests.conftest import IN_CI
from tests.e2e.checks import assert_points_complete
from devtools.stack import TERMINAL, free_port, launch_stack, tiny_spec

pytestmark = [pytest.mark.postgres]

FAST_LIVENESS = {"ADVLAB_HEARTBEAT_S": "0.2", "ADVLAB_STALE_AFTER_S": "10",
                 "ADVLAB_REAP_EVERY_S": "0.5", "ADVLAB_LOST_QUEUED_AFTER_S": "2"}


@pytest.fixture(scope="module")
def fault_db(pg_url):
    """A database of this module's own (no other test's rows meet these workers' reapers)."""
    with throwaway_pg_database("advlab_faults", pg_url) as url:
        yield url.rsplit("/", 1)[1], url


# --------------------------------------------------------------------------- private Redis


class PrivateRedis:
    """`redis-server` on a free port without persistence: a restart really loses its data."""

    def __init__(self, root: Path) -> None:
        self.root, self.port = root, free_port()
        self.proc: subprocess.Popen | None = None
        self._log = open(root / "redis.log", "ab")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.root)],
            stdout=self._log, stderr=subprocess.STDOUT)
        import redis

        poll(lambda: redis.Redis(port=self.port, socket_timeout=1).ping(), timeout=20,
             every=0.05, ignore=redis.RedisError, message="private redis-server did not come up")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def client(self):
        import redis

        return redis.Redis(port=self.port, socket_timeout=5)

    def queued(self, queue: str) -> int:
        """Messages waiting in `queue` (kombu keeps one list per priority step: `queue`,
        `queue\\x06\\x163`, ...)."""
        client = self.client()
        return sum(client.llen(key) for key in client.scan_iter(match=f"{queue}*")
                   if client.type(key) == b"list")


@pytest.fixture
def private_redis(tmp_path):
    if shutil.which("redis-server") is None:
        message = "redis-server binary not found"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    server.kill()
    server._log.close()


def test_redis_restart_with_jobs_queued_and_running_finishes_every_job_exactly_once(
        tmp_path, fault_db, private_redis):
    _, db_url = fault_db
    queue = f"advlab-faults-{uuid.uuid4().hex[:8]}"
    stack = launch_stack(tmp_path / "stack", {"ADVLAB_DATABASE_URL": db_url,
                                              "ADVLAB_BROKER_URL": private_redis.url,
                                              "ADVLAB_QUEUE": queue, **FAST_LIVENESS}, workers=2)
    try:
        # two jobs of a few seconds (one per worker) and four short ones queued behind them
        long_spec = tiny_spec(name="running through a redis restart", epochs=6_000, every=500,
                              attacks=[{"kind": "pgd", "norm": "l2", "radii": [1.0], "steps": 5}])
        specs = {stack.submit(long_spec): long_spec, stack.submit(long_spec): long_spec}
        for i in range(4):
            short = tiny_spec(name=f"queued through a redis restart {i}", seed=i, epochs=20)
            specs[stack.submit(short)] = short
        running = list(specs)[:2]
        ran_on = {i: stack.wait_for(i, {"running"}, timeout=90,
                                    until=lambda b: b["progress"]["step"] >= 500)["worker"]
                  for i in running}
        assert private_redis.queued(queue) == 4  # the queued four are in Redis now

        private_redis.kill()  # SIGKILL: the broker and every message it held are gone
        time.sleep(1.0)
        private_redis.start()
        assert private_redis.queued(queue) == 0  # a fresh, empty Redis on the same port
        states = {i: stack.get(i)["status"] for i in specs}
        assert all(s != "succeeded" for i, s in states.items() if i not in running), states

        finals = {i: stack.wait_for(i, TERMINAL, timeout=240) for i in specs}
        for experiment_id, body in finals.items():
            assert body["status"] == "succeeded", (experiment_id, body.get("error"))
            assert body["attempts"] == 1, (experiment_id, body["attempts"])  # exactly once
            assert_points_complete(stack, experiment_id, specs[experiment_id])
        assert {i: finals[i]["worker"] for i in running} == ran_on  # not re-run elsewhere
        # the reapers re-sent the lost queued rows (from the database, not the broker)
        logs = stack.log_text("worker0", "worker1")
        assert "re-sent" in logs and any(i in logs for i in list(specs)[2:]), logs[-4000:]
    finally:
        stack.close()


# --------------------------------------------------------------------------- PostgreSQL


class CuttableProxy:
    """A TCP proxy 127.0.0.1:port → PostgreSQL that can be cut (every live connection closed,
    new ones refused: the listening socket is closed) and restored on the same port."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target, self.port = target, free_port()
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._listener: socket.socket | None = None

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        with self._lock:
            listener, self._listener = self._listener, None
            live, self._sockets = self._sockets, set()
        if listener is not None:
            listener.close()
        for sock in live:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # cut
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                if self._listener is not listener:  # cut meanwhile
                    client.close(), upstream.close()
                    return
                self._sockets |= {client, upstream}
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for sock in (src, dst):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


@pytest.fixture
def api_behind_proxy(tmp_path, fault_db):
    name, db_url = fault_db
    proxy = CuttableProxy(("127.0.0.1", 5432))
    proxy.start()
    proxied = sa.make_url(db_url).set(host="127.0.0.1", port=proxy.port)
    stack = launch_stack(tmp_path / "pg", {
        "ADVLAB_DATABASE_URL": proxied.render_as_string(hide_password=False),
        "ADVLAB_BROKER_URL": "filesystem://"}, workers=0)
    try:
        yield stack, proxy, name
    finally:
        stack.close()
        proxy.cut()


DB_REQUESTS = [("GET", "/v1/experiments"), ("GET", "/v1/experiments/{id}"),
               ("GET", "/v1/experiments/{id}/metrics"), ("POST", "/v1/experiments/{id}/cancel"),
               ("POST", "/v1/experiments"), ("GET", "/v1/sweeps")]


def _send(client: httpx.Client, method: str, path: str, experiment_id: str) -> httpx.Response:
    body = tiny_spec(name="during the outage") if path == "/v1/experiments" and method == "POST" \
        else None
    return client.request(method, path.format(id=experiment_id), json=body)


def test_postgres_outage_answers_503_with_retry_after_and_recovers_without_restart(
        api_behind_proxy):
    stack, proxy, _ = api_behind_proxy
    api_pid = stack.procs["api"].pid
    with stack.client() as client:
        before = stack.submit(tiny_spec(name="before the outage"), client)
        assert client.get(f"/v1/experiments/{before}").status_code == 200

        proxy.cut()  # pooled connections die, new connections are refused
        for method, path in DB_REQUESTS:
            response = _send(client, method, path, before)
            assert response.status_code == 503, (method, path, response.status_code, response.text)
            assert int(response.headers["Retry-After"]) >= 1
            assert "database unavailable" in response.json()["detail"]
        health = client.get("/v1/health")
        assert health.status_code == 503 and health.json()["database"].startswith("error")

        proxy.start()  # the database is reachable again; the API process was not restarted
        for method, path in DB_REQUESTS:
            response = _send(client, method, path, before)
            assert response.status_code in (200, 202), (method, path, response.text)
        assert client.get("/v1/health").json()["database"] == "ok"
        # the POST refused during the outage left no row behind; the one after it did
        names = [e["name"] for e in client.get("/v1/experiments",
                                               params={"name": "the outage"}).json()["items"]]
        assert sorted(names) == ["before the outage", "during the outage"]
    assert stack.procs["api"].poll() is None and stack.procs["api"].pid == api_pid
    assert "database unavailable" in stack.log_text("api")  # the details went to the log


def test_postgres_backends_terminated_are_replaced_without_an_error(api_behind_proxy, pg_url):
    stack, _, name = api_behind_proxy
    admin = sa.create_engine(pg_url, isolation_level="AUTOCOMMIT")
    backends = sa.text("SELECT pid FROM pg_stat_activity WHERE datname = :n "
                       "AND pid <> pg_backend_pid()")
    try:
        with stack.client() as client:
            experiment_id = stack.submit(tiny_spec(name="before terminate"), client)
            for _ in range(5):  # several pooled connections
                assert client.get("/v1/experiments").status_code == 200
            with admin.connect() as conn:
                killed = {row.pid for row in conn.execute(backends, {"n": name})}
                assert killed, "the API holds no connection to its database?"
                conn.execute(sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                     "WHERE datname = :n AND pid <> pg_backend_pid()"), {"n": name})
            codes = [client.get(f"/v1/experiments/{experiment_id}").status_code for _ in range(10)]
            codes.append(client.post("/v1/experiments",
                                     json=tiny_spec(name="after terminate")).status_code)
            assert codes == [200] * 10 + [202]  # pool_pre_ping replaced every dead connection
            with admin.connect() as conn:
                now = {row.pid for row in conn.execute(backends, {"n": name})}
            assert now and not (now & killed)  # served by new backends
    finally:
        admin.dispose()

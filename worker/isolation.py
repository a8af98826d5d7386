"""Run one attempt of a job in a child process the worker can kill.

A job can sit for minutes inside one torch call, where no flag is ever looked at. So the
science runs in a child (forked from a forkserver that has torch imported already) and the
worker process watches it, at least every `cancel_poll_s`:

- heartbeat with the child's progress; the answer carries the cancel flag: canceled → kill;
  the attempt gone stale (reaped, or the job deleted) → kill;
- the deadline of the job's budget → kill, `failed: time limit: ...`;
- the child's resident memory beyond what it started with over the budget's cap → kill,
  `failed: out of memory: ...` (as is a torch allocation error, or a SIGKILL we did not send:
  the kernel's OOM killer);
- the worker shutting down → kill, and the job is handed back to the queue.

The child writes metrics and matrices itself (attempt-fenced, so a killed or stale child can
never write over a newer attempt); the worker process alone heartbeats and settles the row.
The child exits when the worker process dies (its control pipe closes), so a killed worker
leaves no orphan computing for nobody, and the reaper re-runs the job.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection

import sqlalchemy.exc

from lab.config import Settings
from lab.store.base import StaleAttempt, Store
from worker.budget import Budget
from worker.outcome import Outcome, RunResult

log = logging.getLogger(__name__)

TRANSIENT_DB_ERRORS = (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError,
                       sqlalchemy.exc.TimeoutError)

WATCH_S = 0.2  # how often the worker looks at the child's messages and memory
EXIT_WAIT_S = 10.0  # a child that sent its result gets this long to exit before a kill

# Imported once in the forkserver, so a job does not pay them (torch.optim's first use imports
# torch._dynamo: seconds); a module that fails to import is skipped by multiprocessing.
PRELOAD = [
    "torch", "torch.optim", "torch._dynamo", "advcore.run", "advcore.studies",
    "advcore.data.images", "advcore.data.multi_cluster", "advcore.data.separated",
    "advcore.data.patch", "advcore.learners.cnn", "advcore.learners.mlp",
    "advcore.learners.resnet", "advcore.learners.two_layer", "advcore.learners.patch_cnn",
    "lab.store", "lab.store.migrate", "lab.store.sql", "worker.errors",
    "worker.observer", "worker.placement", "worker.isolation",
]
_CONTEXT = multiprocessing.get_context("forkserver")
_CONTEXT.set_forkserver_preload(PRELOAD)


def _nothing() -> None:
    pass


def start_forkserver() -> None:
    """Start the forkserver and wait until its imports are done (at worker start), so the first
    job neither pays them nor sits in them unable to be canceled."""
    proc = _CONTEXT.Process(target=_nothing, name="advlab-forkserver-warmup")
    proc.start()
    proc.join()


@dataclass(frozen=True)
class JobArgs:
    """What the child needs: picklable, no open handles."""

    experiment_id: str
    attempt: int
    spec: dict
    settings: Settings
    environ: dict[str, str]  # the worker's environment now (the forkserver's may be older)
    threads: int
    device: str | None


def rss_bytes(pid: int | None = None) -> int:
    """Resident set size of a process (Linux /proc; 0 where unknown)."""
    try:
        with open(f"/proc/{pid or 'self'}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


# --------------------------------------------------------------------------- the child


def _is_out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, MemoryError):
        return True
    import torch

    if isinstance(exc, torch.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and "can't allocate memory" in str(exc)


def _exit_with_worker(control: Connection) -> None:
    """EOF on the control pipe: the worker process is gone, and so is this job's purpose."""
    try:
        control.recv()
    except (EOFError, OSError):
        pass
    os._exit(70)


class _Progress:
    """Sends the step to the worker at most every WATCH_S (a million tiny epochs must not fill
    the pipe), and the last one always."""

    def __init__(self, events: Connection) -> None:
        self.events, self.last = events, float("-inf")

    def __call__(self, step: int, total: int) -> None:
        now = time.monotonic()
        if now - self.last >= WATCH_S or step >= total:
            self.last = now
            self.events.send(("progress", step))


def job_main(job: JobArgs, events: Connection, control: Connection) -> None:
    """The child: place threads, run the science, stream records, send one result message."""
    # Ctrl-C in a terminal reaches the whole process group: the worker decides (it hands the
    # job back), the child must not end it as `failed: KeyboardInterrupt`
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    os.environ.clear()
    os.environ.update(job.environ)
    from worker.placement import apply_threads

    apply_threads(job.threads)
    threading.Thread(target=_exit_with_worker, args=(control,), daemon=True).start()
    events.send(("started", rss_bytes()))

    from advcore.observe import Canceled
    from advcore.run import run_experiment
    from advcore.spec import parse_spec
    from lab.store import open_store
    from worker.errors import readable_error
    from worker.observer import StoreObserver

    try:
        store = open_store(job.settings.resolved_database_url, check_schema=False)
        observer = StoreObserver(store, job.experiment_id, job.attempt,
                                 batch=job.settings.metric_batch, progress=_Progress(events))
        summary = run_experiment(parse_spec(job.spec), observer, device=job.device).to_stored()
        observer.flush()
        result = ("stale",) if observer.stale else ("succeeded", summary)
    except (Canceled, StaleAttempt):
        result = ("stale",)
    except TRANSIENT_DB_ERRORS as exc:
        result = ("transient", readable_error(exc))
    except BaseException as exc:  # noqa: BLE001 - every failure of the science is reported
        kind = "oom" if _is_out_of_memory(exc) else "failed"
        if kind == "failed":
            log.exception("experiment %s failed", job.experiment_id)
        result = (kind, readable_error(exc))
    events.send(result)
    events.close()


# --------------------------------------------------------------------------- the worker side


class Watch:
    """The worker's view of one running child: heartbeat, cancel flag, deadline, memory."""

    def __init__(self, proc, events: Connection, store: Store, job: JobArgs, budget: Budget,
                 settings: Settings, shutdown: threading.Event, clock=time.monotonic) -> None:
        self.proc, self.events, self.store, self.job = proc, events, store, job
        self.budget, self.shutdown, self.clock = budget, shutdown, clock
        self.beat_every = max(0.05, min(settings.heartbeat_s, settings.cancel_poll_s))
        self.started = clock()
        self.last_beat = float("-inf")
        self.base_rss = 0
        self.step = 0
        self.result: tuple | None = None

    def kill(self) -> None:
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join(EXIT_WAIT_S)

    def _receive(self) -> None:
        """Take every waiting message from the child (progress, started, its result)."""
        try:
            waiting = self.events.poll(WATCH_S)
            for _ in range(10_000):  # a child flooding progress must not starve the checks
                if not waiting or self.result is not None:
                    break
                message = self.events.recv()
                waiting = self.events.poll(0)
                if message[0] == "progress":
                    self.step = int(message[1])
                elif message[0] == "started":
                    self.base_rss = int(message[1])
                else:
                    self.result = message
        except (EOFError, OSError):  # the child is gone; its exit code says how
            self.proc.join(EXIT_WAIT_S)

    def _beat(self) -> RunResult | None:
        self.last_beat = self.clock()
        try:
            canceled = self.store.heartbeat(self.job.experiment_id, self.job.attempt, self.step)
        except StaleAttempt:
            return RunResult(Outcome.STALE)
        except TRANSIENT_DB_ERRORS:  # database away: try again; the reaper decides if it lasts
            log.warning("heartbeat of %s failed; retrying", self.job.experiment_id, exc_info=True)
            return None
        return RunResult(Outcome.CANCELED) if canceled else None

    def check(self) -> RunResult | None:
        """One look: a reason to stop the child now, or None to let it run."""
        if self.shutdown.is_set():
            return RunResult(Outcome.REQUEUED)
        ran = self.clock() - self.started
        if ran > self.budget.deadline_s:
            return RunResult(Outcome.FAILED, error=self.budget.time_limit_error(ran))
        grown = rss_bytes(self.proc.pid) - self.base_rss if self.base_rss else 0
        if grown > self.budget.memory_bytes:
            return RunResult(Outcome.FAILED, error=self.budget.out_of_memory_error(grown))
        if self.clock() - self.last_beat >= self.beat_every:
            return self._beat()
        return None

    def run(self) -> RunResult:
        while True:
            self._receive()
            if self.result is not None:
                self.proc.join(EXIT_WAIT_S)
                if self.proc.is_alive():
                    self.kill()
                return self._settled_by_child()
            if not self.proc.is_alive():
                self._receive()  # a result sent just before it exited
                if self.result is not None:
                    continue
                return self._died()
            stop = self.check()
            if stop is not None:
                self.kill()
                return stop

    def _settled_by_child(self) -> RunResult:
        kind, *rest = self.result
        if kind == "succeeded":
            return RunResult(Outcome.SUCCEEDED, summary=rest[0])
        if kind == "stale":
            return RunResult(Outcome.STALE)
        if kind == "oom":
            return RunResult(Outcome.FAILED, error=self.budget.out_of_memory_error(
                how=f" ({rest[0].splitlines()[0]})"))
        if kind == "transient":
            return RunResult(Outcome.FAILED, error=rest[0], transient=True)
        return RunResult(Outcome.FAILED, error=rest[0])

    def _died(self) -> RunResult:
        """The child exited without a result."""
        code = self.proc.exitcode
        if code == -signal.SIGKILL:  # not ours: the kernel's OOM killer
            return RunResult(Outcome.FAILED, error=self.budget.out_of_memory_error(
                how=" (the job process was killed by the system)"))
        if code is not None and code < 0:
            how = f"killed by signal {signal.Signals(-code).name}"
        else:
            how = f"exited with code {code}"
        return RunResult(Outcome.FAILED, error=f"job process {how} without a result")


def run_attempt(job: JobArgs, store: Store, settings: Settings, budget: Budget,
                shutdown: threading.Event) -> RunResult:
    """Run `job` in a child process and watch it until it ends or must be stopped."""
    events_in, events_out = _CONTEXT.Pipe(duplex=False)
    control_in, control_out = _CONTEXT.Pipe(duplex=False)
    proc = _CONTEXT.Process(target=job_main, args=(job, events_out, control_in),
                            name=f"advlab-job-{job.experiment_id[:8]}")
    proc.start()
    events_out.close()
    control_in.close()
    watch = Watch(proc, events_in, store, job, budget, settings, shutdown)
    try:
        return watch.run()
    finally:
        if proc.is_alive():
            watch.kill()
        control_out.close()
        events_in.close()
        if proc.exitcode is not None:
            proc.close()

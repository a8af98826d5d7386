"""Remote control and worker heartbeats that keep answering while a job runs.

A worker runs one job at a time in Celery's `solo` pool: the task occupies the worker's main
loop until the job ends (worker.isolation watches the job's child process from there). Celery's
own remote control (`celery inspect`, Flower) and its worker heartbeat run on that loop, so a
busy worker would neither answer `inspect ping/active` nor send heartbeats, and Flower would mark
it offline for the length of every job. Here both run in a thread of their own, on a broker
connection of their own (a kombu connection is never shared between threads): the mailbox is
drained every second and a `worker-heartbeat` event is sent every `HEARTBEAT_S`; `worker-online`
when it starts, `worker-offline` when the worker stops. The worker is started with
`--without-heartbeat` so the main loop's heartbeat does not duplicate it.

Selected by worker.app (`worker_consumer`) on the brokers that carry remote control
(lab.broker.supports_monitoring); Celery's Control step leaves itself out on the others.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from typing import Any

from celery.exceptions import WorkerShutdown, WorkerTerminate
from celery.utils.sysinfo import load_average
from celery.worker import control, state
from celery.worker.consumer import Consumer as CeleryConsumer
from celery.worker.consumer.control import Control
from celery.worker.heartbeat import SOFTWARE_INFO
from celery.worker.pidbox import Pidbox

log = logging.getLogger(__name__)

HEARTBEAT_S = 2.0  # Celery's default worker heartbeat interval (Flower expects about this)


class ThreadedPidbox(Pidbox):
    """The worker's mailbox and heartbeat in a daemon thread."""

    def __init__(self, c: Any) -> None:
        super().__init__(c)
        # the `heartbeat` command (sent by event monitors on start-up) would publish on the main
        # loop's event channel from this thread: here it asks this thread's heartbeat instead
        self.node.handlers = {**control.Panel.data, "heartbeat": self._heartbeat_requested}
        self._beat_now = False
        self._stop = threading.Event()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, c: Any) -> None:
        self._stop.clear()
        self._stopped.clear()
        self._thread = threading.Thread(target=self._loop, args=(c,), daemon=True,
                                        name="advlab-remote-control")
        self._thread.start()

    def on_stop(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._stopped.wait(timeout=5)
            self._thread = None

    def reset(self) -> None:
        """After a failed command: the loop re-opens its consumer on the next round."""
        self._reset = True

    def on_message(self, body: Any, message: Any) -> None:
        try:
            super().on_message(body, message)
        except (WorkerShutdown, WorkerTerminate, SystemExit):
            # `celery control shutdown`: raised here, in this thread; the main loop shuts
            # down warm on SIGTERM (the running job goes back to the queue)
            log.warning("remote control: shutdown requested")
            os.kill(os.getpid(), signal.SIGTERM)

    def _heartbeat_requested(self, state: Any, **kwargs: Any) -> None:
        self._beat_now = True

    def _heartbeat(self, dispatcher: Any, event: str) -> None:
        dispatcher.send(event, freq=HEARTBEAT_S, active=len(state.active_requests),
                        processed=state.all_total_count[0], loadavg=load_average(),
                        **SOFTWARE_INFO)

    def _loop(self, c: Any) -> None:
        backoff = 2.0
        try:
            while not self._stop.is_set():
                try:
                    self._serve(c)
                    backoff = 2.0
                except Exception as exc:  # broker gone: retry, as the main loop does
                    log.warning("remote control: %s; reconnecting in %.0f s", exc, backoff)
                    self._stop.wait(backoff)
                    backoff = min(2 * backoff, 60.0)
        finally:
            self._stopped.set()

    def _serve(self, c: Any) -> None:
        with c.connection_for_read() as connection:
            self._reset = False
            self.node.channel = connection.channel()
            self.consumer = self.node.listen(callback=self.on_message)
            self.consumer.consume()
            with connection.clone() as events, c.app.events.Dispatcher(
                    events, hostname=c.hostname, enabled=c.app.conf.worker_send_task_events,
                    groups=["worker"]) as dispatcher:
                self._heartbeat(dispatcher, "worker-online")
                next_beat = time.monotonic() + HEARTBEAT_S
                try:
                    while not self._stop.is_set() and not self._reset:
                        try:
                            connection.drain_events(timeout=1.0)
                        except socket.timeout:
                            pass
                        if self._beat_now or time.monotonic() >= next_beat:
                            self._beat_now = False
                            self._heartbeat(dispatcher, "worker-heartbeat")
                            next_beat = time.monotonic() + HEARTBEAT_S
                finally:
                    if self._stop.is_set():
                        self._heartbeat(dispatcher, "worker-offline")
                    self.consumer.cancel()
                    self.consumer = None
                    self.node.channel.close()


class ThreadedControl(Control):
    """Celery's Control step with the threaded mailbox."""

    def __init__(self, c: Any, **kwargs: Any) -> None:
        super().__init__(c, **kwargs)
        self.box = ThreadedPidbox(c)
        self.start = self.box.start
        self.stop = self.box.stop
        self.shutdown = self.box.shutdown


class Consumer(CeleryConsumer):
    """Celery's consumer with `ThreadedControl` in place of its Control step."""

    class Blueprint(CeleryConsumer.Blueprint):
        default_steps = [
            "worker.monitor:ThreadedControl" if step == "celery.worker.consumer.control:Control"
            else step for step in CeleryConsumer.Blueprint.default_steps]

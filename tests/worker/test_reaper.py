"""The reaper against a real SQLite store and the real filesystem broker (queue depth is read
from the broker folder, re-sent messages land there)."""

from __future__ import annotations

import threading

from devtools.poll import poll
from lab.store import open_store
from lab.queue import enqueue_experiment, queue_depth
from worker.reaper import Reaper, ReaperThread


def _running(store, make_job, worker="dead-worker"):
    job = make_job()
    return store.start_attempt(job.id, worker)


def test_stale_running_job_is_requeued_and_sent_again(store, settings, make_job):
    job = _running(store, make_job)
    stale = settings.model_copy(update={"stale_after_s": 0.0})
    report = Reaper(store, stale).reap_once()
    assert report.requeued == [job.id] and report.failed == []
    after = store.get_experiment(job.id)
    assert (after.status, after.attempts, after.worker) == ("queued", 1, None)
    assert queue_depth(settings) == 1


def test_job_with_a_fresh_heartbeat_is_left_alone(store, settings, make_job):
    job = _running(store, make_job)
    store.heartbeat(job.id, job.attempts, 3)
    report = Reaper(store, settings).reap_once()  # stale_after_s = 60
    assert report.requeued == [] and store.get_experiment(job.id).status == "running"
    assert queue_depth(settings) == 0


def test_two_reapers_requeue_a_stale_job_exactly_once(store, settings, make_job):
    jobs = [_running(store, make_job) for _ in range(5)]
    stale = settings.model_copy(update={"stale_after_s": 0.0})
    reapers = [Reaper(open_store(settings.resolved_database_url), stale) for _ in range(2)]
    barrier, reports = threading.Barrier(2), [None, None]

    def reap(i):
        barrier.wait()
        reports[i] = reapers[i].reap_once()

    threads = [threading.Thread(target=reap, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    requeued = reports[0].requeued + reports[1].requeued
    assert sorted(requeued) == sorted(j.id for j in jobs)  # each once, by one reaper or the other
    assert queue_depth(settings) == 5


def test_stale_job_past_max_attempts_is_failed_not_requeued(store, settings, make_job):
    job = _running(store, make_job)
    store.requeue(job.id, 1, max_attempts=3)
    store.start_attempt(job.id, "w2")
    store.requeue(job.id, 2, max_attempts=3)
    store.start_attempt(job.id, "w3")
    report = Reaper(store, settings.model_copy(update={"stale_after_s": 0.0})).reap_once()
    assert report.failed == [job.id] and report.requeued == []
    failed = store.get_experiment(job.id)
    assert (failed.status, failed.attempts) == ("failed", 3)
    assert "gave up after 3 attempts" in failed.error
    assert queue_depth(settings) == 0


def test_queued_job_whose_message_was_lost_is_resent_on_the_second_pass(store, settings, make_job):
    job = make_job()  # committed, but its message never reached the broker
    reaper = Reaper(store, settings)  # lost_queued_after_s = 0
    assert reaper.reap_once().resent == []  # first sighting: maybe a worker is just taking it
    assert reaper.reap_once().resent == [job.id]
    assert queue_depth(settings) == 1
    assert reaper.reap_once().resent == []  # the broker holds it now


def test_queued_job_with_its_message_waiting_is_not_resent(store, settings, make_job):
    job = make_job()
    enqueue_experiment(job.id, settings)
    reaper = Reaper(store, settings)
    assert [reaper.reap_once().resent for _ in range(3)] == [[], [], []]
    assert queue_depth(settings) == 1


def test_young_queued_job_is_not_resent(store, settings, make_job):
    make_job()
    reaper = Reaper(store, settings.model_copy(update={"lost_queued_after_s": 3600.0}))
    assert [reaper.reap_once().resent for _ in range(3)] == [[], [], []]
    assert queue_depth(settings) == 0


def test_reaper_thread_keeps_reaping_and_stops_on_request(store, settings, make_job):
    job = _running(store, make_job)
    thread = ReaperThread(Reaper(store, settings.model_copy(update={"stale_after_s": 0.0})),
                          every_s=0.05)
    thread.start()
    try:
        poll(lambda: store.get_experiment(job.id).status == "queued", timeout=30, every=0.05)
    finally:
        thread.stop()
    assert not thread.is_alive()
    assert store.get_experiment(job.id).status == "queued"

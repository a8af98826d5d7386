"""Stored job errors are shown to every lab user: type and message, no traceback, no paths."""

from __future__ import annotations

import traceback

from lab.store.public_error import public_error


def _worker_style_error() -> str:
    def load() -> None:
        open("/srv/advlab/datasets/cifar10/cifar-10-batches-py/data_batch_1")

    try:
        load()
    except OSError as exc:
        frames = traceback.format_exception(type(exc), exc, exc.__traceback__)
        return f"{type(exc).__name__}: {exc}\n\n" + "".join(frames).strip()
    raise AssertionError("unreachable")


def test_frames_go_and_paths_keep_only_their_last_two_parts():
    raw = _worker_style_error()
    assert "Traceback" in raw and __file__ in raw
    assert public_error(raw) == ("FileNotFoundError: [Errno 2] No such file or directory: "
                                 "'…/cifar-10-batches-py/data_batch_1'")


def test_urls_relative_paths_and_plain_messages_are_left_alone():
    text = ("invalid spec: 1 validation error for ExperimentSpec\ndata.d\n  Input should be "
            "greater than 0 [type=greater_than]\n    For further information visit "
            "https://errors.pydantic.dev/2.9/v/greater_than (see examples/fa.json)")
    assert public_error(text) == text
    assert public_error(None) is None


def test_the_store_settles_and_reads_back_the_public_form(make_api):
    store = make_api().store
    exp, _ = store.create_experiment(name="x", tags=[], spec={}, spec_hash="h", total_steps=1,
                                     owner="alice")
    attempt = store.start_attempt(exp.id, "w").attempts
    failed = store.finish(exp.id, attempt, "failed", error=_worker_style_error())
    assert failed.error.startswith("FileNotFoundError") and "/srv/" not in failed.error
    assert store.get_experiment(exp.id).error == failed.error


def test_scrubbing_twice_changes_nothing():
    once = public_error(_worker_style_error())
    assert public_error(once) == once

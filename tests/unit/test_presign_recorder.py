"""The presign-record queue and its writer thread, with a writer that records, fails or blocks on cue."""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from app.db import DatabaseUnavailable
from app.metrics import REGISTRY
from app.repository import PendingUpload
from app.uploads import recorder as recorder_module
from app.uploads.recorder import PendingRecorder
from tests.helpers import pending_record


class FakeWriter:
    """A batch writer for unit tests: records what it got; can fail or block."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.failures_left = 0
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()

    def __call__(self, batch: Sequence[PendingUpload]) -> None:
        self.entered.set()
        self.gate.wait()
        if self.failures_left:
            self.failures_left -= 1
            raise DatabaseUnavailable()
        self.batches.append([r.object_key for r in batch])


def test_every_record_is_written_once_in_order() -> None:
    writer = FakeWriter()
    queue = PendingRecorder(writer)
    for n in range(1200):
        queue.record(pending_record(n))
    assert queue.flush(timeout=10)
    written = [key for batch in writer.batches for key in batch]
    assert written == [f"key-{n}" for n in range(1200)]
    assert all(len(batch) <= recorder_module.BATCH_SIZE for batch in writer.batches)
    assert queue.queued == 0
    assert queue.close()


def test_records_queued_while_the_writer_is_busy_go_in_one_batch() -> None:
    writer = FakeWriter()
    writer.gate.clear()
    queue = PendingRecorder(writer)
    queue.record(pending_record(0))
    assert writer.entered.wait(5)  # taken by the writer, which now waits at the gate
    for n in range(1, 50):
        queue.record(pending_record(n))
    writer.gate.set()
    assert queue.flush(timeout=10)
    assert [len(batch) for batch in writer.batches] == [1, 49]
    queue.close()


def test_a_failed_batch_is_kept_and_retried_in_order(fast_retries: None) -> None:
    writer = FakeWriter()
    writer.failures_left = 3
    queue = PendingRecorder(writer)
    for n in range(10):
        queue.record(pending_record(n))
    assert queue.flush(timeout=10)
    assert [key for batch in writer.batches for key in batch] == [f"key-{n}" for n in range(10)]
    queue.close()


def test_a_full_queue_refuses_with_503() -> None:
    writer = FakeWriter()
    writer.gate.clear()
    queue = PendingRecorder(writer, max_queued=3)
    queue.record(pending_record(0))
    assert writer.entered.wait(5)  # in flight
    for n in range(1, 4):
        queue.record(pending_record(n))
    with pytest.raises(DatabaseUnavailable) as refused:
        queue.record(pending_record(4))
    assert refused.value.status == 503
    assert refused.value.message == "too many uploads waiting to be recorded; try again shortly"
    assert refused.value.headers == {"Retry-After": "2"}
    assert not queue.flush(timeout=0.2)  # stuck behind the gate: flush says so
    writer.gate.set()
    assert queue.close()
    assert sum(len(batch) for batch in writer.batches) == 4


def test_close_stops_the_thread_and_a_new_record_starts_another() -> None:
    writer = FakeWriter()
    queue = PendingRecorder(writer)
    queue.record(pending_record(0))
    first = queue._thread
    assert first is not None and first.is_alive()
    assert queue.close()
    assert not first.is_alive()
    queue.record(pending_record(1))
    assert queue._thread is not None and queue._thread is not first
    assert queue.close()
    assert [key for batch in writer.batches for key in batch] == ["key-0", "key-1"]


class SlowFileWriter:
    """Append each batch's keys to a file, slowly: the parent process reads what a child wrote."""

    def __init__(self, path: str):
        self.path = path

    def __call__(self, batch: Sequence[PendingUpload]) -> None:
        time.sleep(0.3)
        with open(self.path, "a") as out:
            out.writelines(f"{r.object_key}\n" for r in batch)


def _record_and_return(path: str, count: int) -> None:
    queue = PendingRecorder(SlowFileWriter(path))
    for n in range(count):
        queue.record(pending_record(n))
    # Returns at once: the writer lingers and sleeps, so nothing is written yet.


def test_a_multiprocessing_child_flushes_its_queue_on_the_way_out(tmp_path: Path) -> None:
    # granian's workers are multiprocessing children: they end with os._exit after
    # multiprocessing's finalizers, without atexit's hooks.
    path = tmp_path / "written.txt"
    child = multiprocessing.get_context("fork").Process(target=_record_and_return, args=(str(path), 5))
    child.start()
    child.join(10)
    assert child.exitcode == 0
    assert path.read_text().split() == [pending_record(n).object_key for n in range(5)]


def test_the_exit_flush_runs_once_however_many_hooks_call_it(monkeypatch: pytest.MonkeyPatch) -> None:
    # gunicorn's workers run both hooks (atexit, and multiprocessing's finalizers from it).
    monkeypatch.setattr(recorder_module, "EXIT_FLUSH_SECONDS", 0.2)
    writer = FakeWriter()
    writer.gate.clear()  # a database that never answers
    recorder = PendingRecorder(writer)
    recorder.record(pending_record(1))
    assert writer.entered.wait(2)
    dropped = REGISTRY.get_sample_value("upload_presign_records_dropped_total", {"reason": "exit"}) or 0
    started = time.monotonic()
    recorder._flush_at_exit(os.getpid())
    recorder._flush_at_exit(os.getpid())
    assert time.monotonic() - started < 0.35  # one wait, not two
    after = REGISTRY.get_sample_value("upload_presign_records_dropped_total", {"reason": "exit"})
    assert after == dropped + 1  # the one record, counted once
    writer.gate.set()
    recorder.close(timeout=2)

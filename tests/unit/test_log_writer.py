"""BackgroundStreamHandler: log lines written by one thread per process, in order, none lost at exit."""

from __future__ import annotations

import io
import json
import logging
import multiprocessing
import os
import time
from pathlib import Path

import pytest

from app.observability import BackgroundStreamHandler, JsonFormatter


def handler_on(stream: io.TextIOBase) -> tuple[BackgroundStreamHandler, logging.Logger]:
    handler = BackgroundStreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger(f"test.log_writer.{id(handler)}")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    return handler, logger


def test_lines_from_many_calls_are_written_whole_and_in_order() -> None:
    stream = io.StringIO()
    handler, logger = handler_on(stream)
    for n in range(2500):
        logger.info("line %d", n, extra={"n": n})
    assert handler.drain(10)
    entries = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [e["n"] for e in entries] == list(range(2500))
    assert entries[7]["message"] == "line 7"


def test_filters_run_in_the_calling_thread_and_can_drop_a_record() -> None:
    stream = io.StringIO()
    handler, logger = handler_on(stream)
    handler.addFilter(lambda record: record.getMessage() != "secret")
    logger.info("kept")
    logger.info("secret")
    handler.flush()
    assert [json.loads(line)["message"] for line in stream.getvalue().splitlines()] == ["kept"]


def test_a_line_that_cannot_be_formatted_does_not_stop_the_others() -> None:
    stream = io.StringIO()
    handler, logger = handler_on(stream)
    logger.info("%d", "not a number")  # logging's own rule: reported, not raised
    logger.info("after")
    handler.flush()
    assert [json.loads(line)["message"] for line in stream.getvalue().splitlines()] == ["after"]


def _log_and_return(path: str) -> None:
    stream = open(path, "w")  # noqa: SIM115 - open until the process ends, as stdout is
    _, logger = handler_on(stream)  # type: ignore[arg-type]
    for n in range(50):
        logger.info("from the child", extra={"n": n, "pid": os.getpid()})
    # Returns at once: the writer is asleep between writes; the exit must drain it.


def test_a_multiprocessing_child_writes_every_line_before_it_exits(tmp_path: Path) -> None:
    # granian's workers are multiprocessing children: they end with os._exit,
    # after multiprocessing's finalizers and without atexit's hooks.
    path = tmp_path / "child.log"
    child = multiprocessing.get_context("fork").Process(target=_log_and_return, args=(str(path),))
    child.start()
    child.join(10)
    assert child.exitcode == 0
    assert [json.loads(line)["n"] for line in path.read_text().splitlines()] == list(range(50))


def test_a_forked_child_starts_its_own_writer(tmp_path: Path) -> None:
    path = tmp_path / "both.log"
    with path.open("w") as stream:
        handler, logger = handler_on(stream)  # type: ignore[arg-type]
        logger.info("parent before")
        handler.flush()

        def child_logs() -> None:
            logger.info("child")

        child = multiprocessing.get_context("fork").Process(target=child_logs)
        child.start()
        child.join(10)
        logger.info("parent after")
        handler.flush()
    assert child.exitcode == 0
    assert sorted(json.loads(line)["message"] for line in path.read_text().splitlines()) == [
        "child",
        "parent after",
        "parent before",
    ]


def test_arguments_are_rendered_when_logged_not_when_written() -> None:
    stream = io.StringIO()
    handler, logger = handler_on(stream)
    items = ["first"]
    logger.info("items: %s", items)
    items.append("changed later")
    handler.flush()
    assert json.loads(stream.getvalue())["message"] == "items: ['first']"


def test_flush_under_the_handlers_own_lock_does_not_stall() -> None:
    # logging.shutdown() and dictConfig flush each handler while holding its lock.
    stream = io.StringIO()
    handler, logger = handler_on(stream)
    logger.info("queued")
    started = time.monotonic()
    handler.acquire()
    try:
        handler.flush()
    finally:
        handler.release()
    assert time.monotonic() - started < 2
    assert json.loads(stream.getvalue())["message"] == "queued"


def test_a_full_queue_makes_the_caller_write_its_own_line(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = io.StringIO()
    _, logger = handler_on(stream)
    monkeypatch.setattr(BackgroundStreamHandler, "MAX_QUEUED", 0)
    logger.info("written by the caller")
    # No drain: the line is there as soon as the call returns.
    assert json.loads(stream.getvalue())["message"] == "written by the caller"


def test_a_plain_os_fork_child_logs_through_its_own_writer(tmp_path: Path) -> None:
    # gunicorn's workers are os.fork children that leave through sys.exit.
    path = tmp_path / "fork.log"
    with path.open("w") as stream:
        handler, logger = handler_on(stream)  # type: ignore[arg-type]
        logger.info("parent")
        handler.flush()
        pid = os.fork()
        if pid == 0:  # the child
            try:
                for n in range(20):
                    logger.info("child", extra={"n": n})
                handler.flush()
            finally:
                os._exit(0)
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    entries = [json.loads(line) for line in path.read_text().splitlines()]
    assert [e.get("n") for e in entries if e["message"] == "child"] == list(range(20))

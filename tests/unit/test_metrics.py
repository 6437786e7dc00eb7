"""The metrics' plumbing: storage-call outcomes, the server ports, the workers' metrics folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from app.config import EnvReader, server_ports
from app.metrics import REGISTRY
from app.storage.base import NoSuchUpload, StorageError, StorageRefused, StorageTimeout
from app.storage.metering import storage_call
from deploy.metrics import MULTIPROC_DIR, PREPARED, prepare_multiprocess_dir


def calls(operation: str, outcome: str) -> float:
    labels = {"provider": "unit", "operation": operation, "outcome": outcome}
    return REGISTRY.get_sample_value("upload_storage_calls_total", labels) or 0.0


@pytest.mark.parametrize(
    ("error", "outcome"),
    [
        (None, "ok"),
        (StorageTimeout("slow"), "timeout"),
        (StorageRefused("no"), "refused"),
        (NoSuchUpload("gone"), "refused"),
        (StorageError("down"), "error"),
        (RuntimeError("a bug"), "error"),
    ],
)
def test_each_storage_call_is_counted_under_its_outcome(error: Exception | None, outcome: str) -> None:
    operation = f"op-{outcome}-{type(error).__name__}"
    timed = {"provider": "unit", "operation": operation}
    before = calls(operation, outcome)
    if error is None:
        with storage_call("unit", operation):
            pass
    else:
        with pytest.raises(type(error)), storage_call("unit", operation):
            raise error
    assert calls(operation, outcome) == before + 1
    assert REGISTRY.get_sample_value("upload_storage_call_duration_seconds_count", timed) == 1


def ports(**env: str) -> tuple[tuple[int, int | None], list[str]]:
    reader = EnvReader(env)
    return server_ports(reader), reader.problems


def test_metrics_port_is_optional_and_must_not_be_the_public_one() -> None:
    assert ports() == ((3000, None), [])
    assert ports(PORT="8080", METRICS_PORT="9100") == ((8080, 9100), [])
    assert ports(METRICS_PORT="3000")[1] == [
        "METRICS_PORT: must differ from PORT (3000): the public port never serves metrics"
    ]
    assert ports(METRICS_PORT="metrics")[1] == ["METRICS_PORT: expected a whole number, got 'metrics'"]
    assert ports(METRICS_PORT="70000")[1] == ["METRICS_PORT: must be between 1 and 65535, got 70000"]


@pytest.fixture
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (MULTIPROC_DIR, PREPARED, "METRICS_PORT"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.usefixtures("clean_environ")
def test_no_metrics_port_means_no_metrics_folder() -> None:
    assert prepare_multiprocess_dir({}) is None
    assert MULTIPROC_DIR not in os.environ


@pytest.mark.usefixtures("clean_environ")
def test_the_folder_is_emptied_once_at_start_and_named_for_the_workers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "metrics"
    folder.mkdir()
    (folder / "counter_123.db").write_bytes(b"a previous run's")
    monkeypatch.setenv(MULTIPROC_DIR, str(folder))
    assert prepare_multiprocess_dir({"METRICS_PORT": "9100"}) == folder
    assert list(folder.iterdir()) == []
    assert os.environ[MULTIPROC_DIR] == str(folder)
    # A worker's file, then the same process (gunicorn re-reading its config): kept.
    (folder / "counter_456.db").write_bytes(b"a worker's")
    prepare_multiprocess_dir({"METRICS_PORT": "9100"})
    assert [p.name for p in folder.iterdir()] == ["counter_456.db"]


@pytest.mark.usefixtures("clean_environ")
def test_without_a_folder_given_a_fresh_one_is_made() -> None:
    folder = prepare_multiprocess_dir({"METRICS_PORT": "9100"})
    assert folder is not None and folder.is_dir() and os.environ[MULTIPROC_DIR] == str(folder)
    folder.rmdir()

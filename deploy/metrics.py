"""The metrics server: ``/metrics`` on METRICS_PORT, from the server's main process, summed over its workers.

Each worker counts in files of its own in ``PROMETHEUS_MULTIPROC_DIR`` (the
official client's multi-process mode); a scrape reads them all, so the
answer covers every worker, whichever served the requests, and a worker
that was replaced keeps its counts. The public port never answers it: the
server listens on METRICS_PORT alone, which an operator keeps off the load
balancer. METRICS_PORT unset: no metrics server, and counting stays in
each process's memory.

This module imports neither the app nor ``prometheus_client`` at import
time: the multi-process mode is chosen when the client is first imported,
so the folder must be named before that (see ``deploy/__init__.py``).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Mapping
from contextlib import suppress
from pathlib import Path
from typing import Any

from dotenv import dotenv_values

MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"
PREPARED = "UPLOAD_SERVICE_METRICS_DIR_PREPARED"


def prepare_multiprocess_dir(env: Mapping[str, str] | None = None) -> Path | None:
    """Create or empty the workers' metrics folder when METRICS_PORT (or .env's) or the folder is set.

    The folder is ``PROMETHEUS_MULTIPROC_DIR`` when set, else a new temporary
    one, whose name is then put in the environment for the workers to inherit.
    Files a previous run left there are removed: their counts are not ours.
    """
    if env is None:
        env = os.environ
        wanted = env.get("METRICS_PORT") or dotenv_values().get("METRICS_PORT")
    else:
        wanted = env.get("METRICS_PORT")
    given = os.environ.get(MULTIPROC_DIR)
    if not (wanted or "").strip() and not given:
        return None
    directory = Path(given or tempfile.mkdtemp(prefix="upload-service-metrics-"))
    # The client writes there as soon as a metric exists: the folder must be there first.
    directory.mkdir(parents=True, exist_ok=True)
    if os.environ.get(PREPARED) != str(directory):
        for stale in directory.glob("*.db"):
            stale.unlink(missing_ok=True)
    os.environ[MULTIPROC_DIR] = str(directory)
    # Not emptied again by this process's children (gunicorn re-reads its config on HUP).
    os.environ[PREPARED] = str(directory)
    return directory


class _LiveWorkersOnly:
    """The multi-process collector, after removing the gauges of workers that are gone.

    A ``livesum`` gauge counts only live processes once a dead one is marked
    so; gunicorn's master could mark them, granian's Rust supervisor cannot,
    so every scrape marks those whose process no longer exists.
    """

    def __init__(self, directory: Path):
        from prometheus_client.multiprocess import MultiProcessCollector

        self._directory = directory
        self._collector = MultiProcessCollector(None, path=str(directory))

    def collect(self) -> Iterable[Any]:
        from prometheus_client.multiprocess import mark_process_dead

        for path in self._directory.glob("gauge_live*_*.db"):
            pid = path.stem.rpartition("_")[2]
            if pid.isdigit() and not _alive(int(pid)):
                # Two scrapes at once may both find it; the second finds it gone.
                with suppress(FileNotFoundError):
                    mark_process_dead(int(pid), str(self._directory))
        return self._collector.collect()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def serve(host: str, port: int) -> None:
    """Serve the workers' summed metrics on ``host:port`` from a daemon thread of this process."""
    from prometheus_client import CollectorRegistry, start_http_server

    registry = CollectorRegistry()
    registry.register(_LiveWorkersOnly(Path(os.environ[MULTIPROC_DIR])))  # type: ignore[arg-type]
    start_http_server(port, addr=host, registry=registry)

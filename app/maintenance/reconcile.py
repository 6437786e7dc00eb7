"""Reconcile a bucket with its files table: objects with no row, rows with no object.

The listing is streamed a page at a time into a table, under the run's own
id (so it works through a transaction pooler, and two runs never mix);
PostgreSQL does both anti-joins and the results are read back a page at a
time, so memory stays flat however big the bucket.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from ..metrics import RECONCILE_FINDINGS, RECONCILE_RUNS
from ..repository import ListedRow, MaintenanceRepository
from ..storage import StorageProvider
from .sweep import STALE_CLAIM_SECONDS

PAGE_SIZE = 1000


@dataclass
class ReconcileReport:
    """What reconcile found, and with ``--fix`` what it changed."""

    objects_listed: int = 0
    rows: int = 0
    orphan_objects: int = 0
    recent_orphan_objects: int = 0
    deleted_objects: int = 0
    failed_objects: int = 0
    missing_objects: int = 0
    recent_missing_objects: int = 0
    removed_rows: int = 0

    @property
    def unresolved(self) -> int:
        """Findings older than the grace period that are still there."""
        return (
            self.orphan_objects - self.recent_orphan_objects - self.deleted_objects
            + self.missing_objects - self.recent_missing_objects - self.removed_rows
        )  # fmt: skip


Say = Callable[[str], None]


def reconcile(
    repo: MaintenanceRepository,
    provider: StorageProvider,
    grace_seconds: float,
    *,
    fix: bool = False,
    say: Say = lambda _line: None,
    page_size: int = PAGE_SIZE,
) -> ReconcileReport:
    """Compare ``provider``'s bucket with its table; with ``fix``, clean what is older than the grace."""
    listed_since = datetime.now(UTC)
    run = _Run(repo, provider, fix, say, page_size, ReconcileReport())
    repo.start_listing()
    try:
        for page in provider.list_objects():
            repo.add_to_listing([(o.key, o.size, o.last_modified) for o in page])
            run.report.objects_listed += len(page)
        run.report.rows = repo.count_rows(provider.name)
        cutoff = datetime.now(UTC) - timedelta(seconds=grace_seconds)
        run.objects_without_row(cutoff)
        run.rows_without_object(listed_since, cutoff)
    except BaseException:
        # The failure is what the caller hears of: if the database is what failed, the
        # run's copy of the listing stays until a later run removes it as abandoned.
        with suppress(Exception):
            repo.finish_listing()
        raise
    else:
        repo.finish_listing()
    finally:
        # What a failed run did before it failed counts too.
        RECONCILE_RUNS.labels(provider.name).inc()
        for finding in ("orphan_objects", "missing_objects", "deleted_objects", "removed_rows"):
            RECONCILE_FINDINGS.labels(provider.name, finding).inc(getattr(run.report, finding))
    return run.report


@dataclass
class _Run:
    repo: MaintenanceRepository
    provider: StorageProvider
    fix: bool
    say: Say
    page_size: int
    report: ReconcileReport

    def objects_without_row(self, cutoff: datetime) -> None:
        after = ""
        while page := self.repo.objects_without_row(self.provider.name, after, self.page_size):
            after = page[-1][0]
            old = []
            for key, size, modified in page:
                self.report.orphan_objects += 1
                recent = modified > cutoff
                self.report.recent_orphan_objects += recent
                self.say(f"object without row: {key} ({size} bytes, {modified:%Y-%m-%d %H:%M:%S}Z)"
                         + (" - recent, left alone" if recent else ""))  # fmt: skip
                if not recent:
                    old.append(key)
            if self.fix and old:
                self._delete_orphans(old)

    def _delete_orphans(self, keys: list[str]) -> None:
        # Claimed like a sweep's: a save that races this either wins (and the object stays) or is refused.
        claimed = self.repo.claim_orphans(self.provider.name, keys, STALE_CLAIM_SECONDS)
        failed = set(self.provider.delete_many(claimed))
        self.repo.mark_swept([key for key in claimed if key not in failed])
        self.report.deleted_objects += len(claimed) - len(failed)
        self.report.failed_objects += len(failed)

    def rows_without_object(self, listed_since: datetime, cutoff: datetime) -> None:
        after = 0
        name = self.provider.name
        # Rows saved after the listing began are skipped: their objects may have
        # arrived behind the listing's position.
        while page := self.repo.rows_without_object(name, after, listed_since, self.page_size):
            after = page[-1].id
            for row in page:
                self.report.missing_objects += 1
                recent = row.uploaded_at is not None and row.uploaded_at > cutoff
                self.report.recent_missing_objects += recent
                self.say(f"row without object: {name} id {row.id} {row.object_key}"
                         + (" - recent, left alone" if recent else ""))  # fmt: skip
                if self.fix and not recent and self._still_missing(row):
                    self.repo.delete_row(name, row)
                    self.report.removed_rows += 1

    def _still_missing(self, row: ListedRow) -> bool:
        # The listing is a moment in the past: look again before removing a row.
        return self.provider.head(row.object_key) is None

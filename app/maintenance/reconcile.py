"""Reconcile a bucket with its files table: objects with no row, rows with no object.

The listing is streamed a page at a time into a temporary table on the
command's own connection; PostgreSQL does both anti-joins and the results
are read back a page at a time, so memory stays flat however big the bucket.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

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
    report = ReconcileReport()
    listed_since = datetime.now(UTC)
    repo.start_listing()
    for page in provider.list_objects():
        repo.add_to_listing([(o.key, o.size, o.last_modified) for o in page])
        report.objects_listed += len(page)
    report.rows = repo.count_rows(provider.name)
    cutoff = datetime.now(UTC) - timedelta(seconds=grace_seconds)
    _objects_without_row(repo, provider, cutoff, fix, say, page_size, report)
    _rows_without_object(repo, provider, listed_since, cutoff, fix, say, page_size, report)
    return report


def _objects_without_row(
    repo: MaintenanceRepository,
    provider: StorageProvider,
    cutoff: datetime,
    fix: bool,
    say: Say,
    page_size: int,
    report: ReconcileReport,
) -> None:
    after = ""
    while page := repo.objects_without_row(provider.name, after, page_size):
        after = page[-1][0]
        old = []
        for key, size, modified in page:
            report.orphan_objects += 1
            recent = modified > cutoff
            report.recent_orphan_objects += recent
            say(f"object without row: {key} ({size} bytes, {modified:%Y-%m-%d %H:%M:%S}Z)"
                + (" - recent, left alone" if recent else ""))  # fmt: skip
            if not recent:
                old.append(key)
        if fix and old:
            # Claimed like a sweep's: a save that races this either wins (and
            # the object stays) or is refused.
            claimed = repo.claim_orphans(provider.name, old, STALE_CLAIM_SECONDS)
            failed = set(provider.delete_many(claimed))
            repo.mark_swept([key for key in claimed if key not in failed])
            report.deleted_objects += len(claimed) - len(failed)
            report.failed_objects += len(failed)


def _rows_without_object(
    repo: MaintenanceRepository,
    provider: StorageProvider,
    listed_since: datetime,
    cutoff: datetime,
    fix: bool,
    say: Say,
    page_size: int,
    report: ReconcileReport,
) -> None:
    after = 0
    # Rows saved after the listing began are skipped: their objects may have
    # arrived behind the listing's position.
    while page := repo.rows_without_object(provider.name, after, listed_since, page_size):
        after = page[-1].id
        for row in page:
            report.missing_objects += 1
            recent = row.uploaded_at is not None and row.uploaded_at > cutoff
            report.recent_missing_objects += recent
            say(f"row without object: {provider.name} id {row.id} {row.object_key}"
                + (" - recent, left alone" if recent else ""))  # fmt: skip
            if fix and not recent and _still_missing(provider, row):
                repo.delete_row(provider.name, row)
                report.removed_rows += 1


def _still_missing(provider: StorageProvider, row: ListedRow) -> bool:
    # The listing is a moment in the past: look again before removing a row.
    return provider.head(row.object_key) is None

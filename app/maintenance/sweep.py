"""Sweep abandoned uploads: presigned, perhaps uploaded, never saved.

Safe to run from cron on several replicas at once: each sweeper claims a
batch in PostgreSQL (``FOR UPDATE SKIP LOCKED``, committed before any object
is deleted), so no two delete the same object, and save-metadata refuses a
claimed key, so nothing is deleted under a save that lands meanwhile.

Only keys whose upload URL has expired are claimed. A PUT that started just
before the expiry can still land after the sweep: the swept record stays
``keep_swept_seconds``, and before it is forgotten its object is deleted once
more; a save meeting the claim in between deletes the object itself (410).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from ..metrics import SWEEP_RUNS, SWEEP_UPLOADS
from ..repository import MaintenanceRepository
from ..storage import MultipartProvider, StorageError, StorageProvider

BATCH_SIZE = 500
# A claim whose sweeper died before finishing is taken again after this long.
STALE_CLAIM_SECONDS = 15 * 60
# Swept records stay this long (and while their upload URL is valid) so that a
# save whose HEAD preceded the delete still meets the claim, then go.
KEEP_SWEPT_SECONDS = 3600


@dataclass
class SweepReport:
    """What one sweep did, per provider."""

    swept: dict[str, int] = field(default_factory=dict)
    failed: dict[str, int] = field(default_factory=dict)
    #: multipart uploads started before the cut-off and never completed
    aborted: dict[str, int] = field(default_factory=dict)
    forgotten: int = 0
    #: what could not be looked at (a provider's multipart listing), for the operator
    problems: list[str] = field(default_factory=list)

    @property
    def total_swept(self) -> int:
        """Uploads swept across providers."""
        return sum(self.swept.values())

    @property
    def total_failed(self) -> int:
        """Uploads whose object could not be deleted (retried by a later sweep)."""
        return sum(self.failed.values())


def sweep(
    repo: MaintenanceRepository,
    providers: Mapping[str, StorageProvider],
    older_than: float,
    *,
    batch_size: int = BATCH_SIZE,
    keep_swept_seconds: float = KEEP_SWEPT_SECONDS,
    expired_for: float = 0,
    ours: Callable[[str], bool] | None = None,
) -> SweepReport:
    """Delete the objects of uploads presigned more than ``older_than`` seconds ago and never saved.

    Only those whose last URL expired ``expired_for`` seconds ago or more: a
    client that finished its upload just before the expiry has that long to save.
    ``ours``, when given, says which keys' unfinished multipart uploads may be
    aborted (the service's own: a shared bucket has other writers).
    """
    report = SweepReport(
        swept=dict.fromkeys(providers, 0),
        failed=dict.fromkeys(providers, 0),
        aborted=dict.fromkeys(providers, 0),
    )
    outcome = "failed"
    try:
        _sweep(repo, providers, older_than, report, batch_size, keep_swept_seconds, expired_for, ours)
        outcome = "ok"
    finally:
        # What a failed run did before it failed counts too.
        SWEEP_RUNS.labels(outcome).inc()
        for name in providers:
            SWEEP_UPLOADS.labels(name, "swept").inc(report.swept[name])
            SWEEP_UPLOADS.labels(name, "failed").inc(report.failed[name])
            SWEEP_UPLOADS.labels(name, "multipart_aborted").inc(report.aborted[name])
    return report


def _sweep(
    repo: MaintenanceRepository,
    providers: Mapping[str, StorageProvider],
    older_than: float,
    report: SweepReport,
    batch_size: int,
    keep_swept_seconds: float,
    expired_for: float,
    ours: Callable[[str], bool] | None,
) -> None:
    while True:
        claimed = repo.claim_abandoned(
            list(providers), older_than, batch_size, STALE_CLAIM_SECONDS, expired_for=expired_for
        )
        for name, keys in _by_provider(claimed).items():
            failed = set(providers[name].delete_many(keys))
            # A failed delete keeps its claim: the next sweep after it goes stale retries it.
            repo.mark_swept([key for key in keys if key not in failed])
            report.swept[name] += len(keys) - len(failed)
            report.failed[name] += len(failed)
        if len(claimed) < batch_size:
            break
    _abort_unfinished(repo, providers, older_than, report, expired_for, ours)
    report.forgotten = _forget_swept(repo, providers, keep_swept_seconds, batch_size)


def _by_provider(pairs: Sequence[tuple[str, str]]) -> dict[str, list[str]]:
    """Group (key, provider) pairs into each provider's keys, in order."""
    grouped: dict[str, list[str]] = {}
    for key, provider in pairs:
        grouped.setdefault(provider, []).append(key)
    return grouped


def _forget_swept(
    repo: MaintenanceRepository, providers: Mapping[str, StorageProvider], keep: float, batch_size: int
) -> int:
    """Delete late-landed objects of long-swept keys, then forget those records; return how many."""
    forgotten, after = 0, ""
    while True:
        batch = repo.forgettable(list(providers), keep, after, batch_size)
        for name, keys in _by_provider(batch).items():
            # A key whose object cannot be deleted now stays remembered: the next sweep tries again.
            failed = set(providers[name].delete_many(keys))
            forgotten += repo.forget_swept([key for key in keys if key not in failed])
        if len(batch) < batch_size:
            return forgotten
        after = batch[-1][0]


def _abort_unfinished(
    repo: MaintenanceRepository,
    providers: Mapping[str, StorageProvider],
    older_than: float,
    report: SweepReport,
    expired_for: float,
    ours: Callable[[str], bool] | None,
) -> None:
    """Abort multipart uploads started before the cut-off: their parts cost storage and never show.

    An upload whose key still has a URL that works (a part signed minutes ago)
    is in progress, however long ago it started, and is left alone.
    """
    cutoff = datetime.now(UTC) - timedelta(seconds=older_than)
    for name, provider in providers.items():
        if not isinstance(provider, MultipartProvider):
            continue  # Azure: uncommitted blocks expire on their own after a week
        try:
            unfinished = [
                u
                for u in provider.list_multipart_uploads()
                if u.initiated < cutoff and (ours is None or ours(u.key))
            ]
        except StorageError as exc:
            report.problems.append(f"{name}: could not list multipart uploads: {exc.message}")
            continue
        live = repo.live_keys(sorted({u.key for u in unfinished}), expired_for)
        for upload in unfinished:
            if upload.key in live:
                continue
            # Aborting never touches a completed object, so no claim is needed.
            try:
                provider.abort_multipart(upload.key, upload.upload_id)
            except StorageError:
                report.failed[name] += 1
                continue
            report.aborted[name] += 1

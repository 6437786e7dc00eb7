"""`flask storage ...`: bucket set-up and checks, sweeping abandoned uploads, reconciling buckets."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

import click
import psycopg2
from flask import Flask
from flask.cli import AppGroup

from .. import components
from ..config import PROVIDERS, Settings
from ..migrations import pending_migrations
from ..repository import FILE_TABLES, MaintenanceRepository
from ..storage import ProviderRegistry, StorageError, StorageProvider, StorageRefused
from ..storage.base import CORS_ALLOWED_HEADERS, CORS_EXPOSED_HEADERS, CORS_MAX_AGE_SECONDS
from .durations import Duration, format_duration
from .reconcile import reconcile
from .sweep import BATCH_SIZE, sweep

storage_cli = AppGroup("storage", help="Buckets of the enabled providers: set-up, checks, clean-up.")


def _settings() -> Settings:
    return components.settings()


def _providers() -> ProviderRegistry:
    providers = components.providers()
    if not providers:
        raise click.ClickException("no provider is configured")
    return providers


def _chosen(names: Sequence[str]) -> Mapping[str, StorageProvider]:
    """Return the providers named (all enabled ones when none are), refusing a disabled one."""
    providers = _providers()
    if not names:
        return providers
    for name in names:
        if name not in providers:
            needs = ", ".join(providers.missing(name)) or "its variables"
            raise click.ClickException(f"{name} is not configured: set {needs}")
    return {name: providers[name] for name in names}


def _origins(given: Sequence[str]) -> list[str]:
    return list(given) or list(_settings().cors_allowed_origins)


@contextmanager
def _maintenance_repository(purpose: str) -> Iterator[MaintenanceRepository]:
    """Open a connection of the command's own, as a role that sees every user's rows."""
    try:
        conn = psycopg2.connect(
            _settings().database_url, connect_timeout=10, application_name=f"upload-service-{purpose}"
        )
    except psycopg2.OperationalError:
        raise click.ClickException("cannot connect to the database (DATABASE_URL)") from None
    try:
        repo = MaintenanceRepository(conn, events=_settings().events_enabled)
        if repo.row_security_hides_rows():
            raise click.ClickException(
                "row-level security hides other users' rows from this database role: run this "
                "command as the tables' owner (the role migrations run as), e.g. "
                "DATABASE_URL=<owner's URL> flask storage ..."
            )
        yield repo
    finally:
        conn.close()


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Format rows as an aligned plain-text table."""
    cells = [[str(c) for c in header], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells
    )


@storage_cli.command("create-buckets")
@click.option("--wait", type=float, default=0.0, help="Seconds to keep retrying while storage is not up yet.")
def create_buckets_command(wait: float) -> None:
    """Create each enabled provider's bucket or container if it is missing."""
    deadline = time.monotonic() + wait
    for name, provider in _providers().items():
        while True:
            try:
                created = provider.ensure_bucket()
                break
            except StorageError as exc:
                if time.monotonic() >= deadline:
                    raise click.ClickException(f"{name}: {exc.message}") from None
                time.sleep(1)
        click.echo(f"{name}: {'created' if created else 'exists'} {provider.bucket}")


def b2_native_cors_rules(origins: Sequence[str]) -> list[dict[str, object]]:
    """The same rules in the form Backblaze's native API and `b2` CLI take."""
    return [
        {
            "corsRuleName": "browserUploads",
            "allowedOrigins": list(origins),
            "allowedOperations": ["s3_get", "s3_head", "s3_put", "s3_post", "s3_delete"],
            "allowedHeaders": [h.lower() for h in CORS_ALLOWED_HEADERS],
            "exposeHeaders": [h.lower() for h in CORS_EXPOSED_HEADERS],
            "maxAgeSeconds": CORS_MAX_AGE_SECONDS,
        }
    ]


@storage_cli.command("cors")
@click.argument("providers", nargs=-1, type=click.Choice(PROVIDERS))
@click.option("--origin", "origins", multiple=True, help="An origin pages upload from; repeat for several.")
def cors_command(providers: tuple[str, ...], origins: tuple[str, ...]) -> None:
    """Let pages on ORIGINs upload and download directly (default: every enabled provider).

    S3, R2 and B2 through PutBucketCors; Azure through the Blob service's
    properties (CORS there is per storage account). Origins default to
    CORS_ALLOWED_ORIGINS.

    B2 can also take the rules from Backblaze's own CLI, as its direct-upload
    article does (``b2 update-bucket --corsRules '[{"corsRuleName":
    "allowBrowserPut", "allowedOrigins": ["*"], "allowedHeaders": ["*"],
    "allowedOperations": ["s3_put"], "maxAgeSeconds": 3600}]' <bucket>
    allPublic``). ``s3_put`` alone is enough for single PUTs; the upload page's
    downloads and uploads in parts also need s3_get, s3_head, s3_post and
    s3_delete, which the rules printed on refusal include.
    """
    chosen = _origins(origins)
    if not chosen:
        raise click.ClickException("give --origin https://your.site (or set CORS_ALLOWED_ORIGINS)")
    not_applied = []
    for name, provider in _chosen(providers).items():
        try:
            provider.set_cors(chosen)
        except StorageRefused as exc:
            if name != "b2":
                raise click.ClickException(f"{name}: {exc.message}") from None
            # Some B2 keys and buckets refuse the S3 call (a bucket with native
            # rules, a key without writeBuckets): B2's own CLI can still set them.
            rules = json.dumps(b2_native_cors_rules(chosen), separators=(",", ":"))
            click.echo(
                f"b2: the S3 API refused PutBucketCors ({exc.message}); the rules were NOT applied.\n"
                "Apply them with Backblaze's CLI (or the bucket's CORS settings in the web console):\n"
                f"  b2 bucket update --cors-rules '{rules}' {provider.bucket}\n"
                "or, with the older CLI that Backblaze's direct-upload article uses (it also sets the "
                "bucket's type, here as B2_PUBLIC_READ says):\n"
                f"  b2 update-bucket --corsRules '{rules}' {provider.bucket} "
                f"{'allPublic' if provider.public_read else 'allPrivate'}"
            )
            not_applied.append(name)
            continue
        except StorageError as exc:
            raise click.ClickException(f"{name}: {exc.message}") from None
        click.echo(f"{name}: CORS on {provider.bucket} allows {', '.join(chosen)}")
    if not_applied:
        raise SystemExit(1)


@storage_cli.command("sweep")
@click.option(
    "--older-than",
    type=Duration(),
    default="24h",
    show_default=True,
    help="Sweep uploads presigned at least this long ago and never saved (30m, 24h, 0s).",
)
@click.option("--batch-size", type=click.IntRange(1, 1000), default=BATCH_SIZE, show_default=True)
def sweep_command(older_than: int, batch_size: int) -> None:
    """Delete abandoned uploads: presigned, never saved. Safe on several replicas at once."""
    providers = _providers()
    with _maintenance_repository("sweep") as repo:
        report = sweep(repo, providers, older_than, batch_size=batch_size)
    click.echo(f"abandoned uploads presigned more than {format_duration(older_than)} ago and never saved:")
    rows = [(name, report.swept[name], report.failed[name], report.aborted[name]) for name in providers]
    click.echo(_table(("provider", "swept", "failed", "multipart aborted"), rows))
    if report.forgotten:
        click.echo(f"forgot {report.forgotten} records of uploads swept earlier")
    for problem in report.problems:
        click.echo(problem, err=True)
    if report.total_failed:
        failed = report.total_failed
        click.echo(
            f"{failed} objects could not be deleted or uploads aborted; a later sweep retries them", err=True
        )
    if report.total_failed or report.problems:
        raise SystemExit(1)


@storage_cli.command("reconcile")
@click.argument("provider", type=click.Choice(PROVIDERS))
@click.option("--fix", is_flag=True, help="Delete orphan objects and remove rows whose object is gone.")
@click.option(
    "--grace",
    type=Duration(),
    default="24h",
    show_default=True,
    help="Leave alone objects and rows younger than this (uploads in flight).",
)
def reconcile_command(provider: str, fix: bool, grace: int) -> None:
    """Compare PROVIDER's bucket with its table: objects with no row, rows with no object.

    Exits 1 while findings older than the grace period remain.
    """
    storage = _chosen([provider])[provider]
    with _maintenance_repository("reconcile") as repo:
        try:
            report = reconcile(repo, storage, grace, fix=fix, say=click.echo)
        except StorageError as exc:
            raise click.ClickException(f"{provider}: {exc.message}") from None
    table = FILE_TABLES[provider][0]
    action = "fixed" if fix else "to fix (--fix)"
    click.echo(f"\n{provider}: bucket {storage.bucket} against {table} (grace {format_duration(grace)})")
    click.echo(
        _table(
            ("", "count", "younger than grace", action),
            [
                ("objects listed", report.objects_listed, "", ""),
                (f"rows in {table}", report.rows, "", ""),
                (
                    "objects with no row",
                    report.orphan_objects,
                    report.recent_orphan_objects,
                    report.deleted_objects if fix else report.orphan_objects - report.recent_orphan_objects,
                ),
                (
                    "rows with no object",
                    report.missing_objects,
                    report.recent_missing_objects,
                    report.removed_rows if fix else report.missing_objects - report.recent_missing_objects,
                ),
            ],
        )
    )
    if report.failed_objects:
        click.echo(f"{report.failed_objects} objects could not be deleted", err=True)
    if report.unresolved:
        raise SystemExit(1)


def _cors_status(provider: StorageProvider, origins: Sequence[str]) -> tuple[str, bool]:
    if not origins:
        return "not checked (give --origin or set CORS_ALLOWED_ORIGINS)", True
    rules = provider.get_cors()
    # What a browser's preflight asks for: the headers presign tells it to send.
    # A write-once upload's If-None-Match included: CORS set before it existed refuses that preflight.
    presigned = provider.presign_upload("check", "text/plain", None, 60, create_only=True)
    headers = [h.lower() for h in presigned.headers]
    refused = [
        origin
        for origin in origins
        if not any(
            rule.allows(origin, "PUT")
            and rule.allows(origin, "GET")
            and all(rule.allows(origin, "PUT", h) for h in headers)
            for rule in rules
        )
    ]
    if refused:
        return f"does not allow {', '.join(refused)} (run: flask storage cors {provider.name})", False
    return f"allows {', '.join(origins)}", True


def _check_provider(provider: StorageProvider, origins: Sequence[str]) -> tuple[list[str], bool]:
    try:
        exists = provider.bucket_exists()
    except StorageRefused as exc:
        return [f"refused: {exc.message}", "-", "-"], False
    except StorageError as exc:
        return [f"unknown: {exc.message}", "-", "-"], False
    if not exists:
        return ["ok", "missing (run: flask storage create-buckets)", "-"], False
    try:
        cors, cors_ok = _cors_status(provider, origins)
    except StorageError as exc:
        cors, cors_ok = f"cannot read: {exc.message}", False
    return ["ok", "exists", cors], cors_ok


def _check_database(settings: Settings) -> tuple[str, bool]:
    try:
        pending = pending_migrations(settings.database_url, row_level_security=settings.db_row_level_security)
    except psycopg2.Error as exc:
        return f"unreachable ({type(exc).__name__})", False
    if pending:
        return f"{len(pending)} migrations pending (run: flask db upgrade)", False
    return "ok, schema up to date", True


@storage_cli.command("check")
@click.option(
    "--origin", "origins", multiple=True, help="Origin whose CORS to check (default: CORS_ALLOWED_ORIGINS)."
)
def check_command(origins: tuple[str, ...]) -> None:
    """Check each provider's credentials, bucket and CORS, and the database; exit 1 on a problem."""
    settings = _settings()
    providers = components.providers()
    chosen = _origins(origins)
    rows: list[list[str]] = []
    healthy = True
    for name in PROVIDERS:
        provider = providers.get(name)
        if provider is None:
            needs = ", ".join(providers.missing(name)) or "its variables"
            rows.append([name, "-", f"not configured (set {needs})", "-", "-"])
            continue
        cells, ok = _check_provider(provider, chosen)
        healthy &= ok
        rows.append([name, provider.bucket, *cells])
    click.echo(_table(("provider", "bucket", "credentials", "bucket exists", "CORS"), rows))
    database, database_ok = _check_database(settings)
    click.echo(f"database: {database}")
    if not providers:
        click.echo("no provider is configured", err=True)
    if not (healthy and database_ok and providers):
        raise SystemExit(1)


def init_app(app: Flask) -> None:
    """Register ``flask storage``."""
    app.cli.add_command(storage_cli)

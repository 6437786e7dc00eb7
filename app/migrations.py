"""Apply the numbered ``.sql`` files in ``migrations/``, each once, in order.

Safe when several containers start at once, directly or through a
transaction pooler: the whole run is one transaction holding a
transaction-scoped advisory lock, so the second waits and then finds
nothing to do, and no lock can outlive its run.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import click
import psycopg2
from flask import Flask, current_app
from flask.cli import AppGroup

from .config import Settings

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
# Any constant unique to this application; both lock and unlock use it.
ADVISORY_LOCK_ID = 4_242_001
_FILE_NAME = re.compile(r"^(\d+)_([A-Za-z0-9_-]+)\.sql$")

CREATE_MIGRATIONS_TABLE = """
    CREATE TABLE IF NOT EXISTS schema_migrations (
        version TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        checksum TEXT NOT NULL,
        applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
    )
"""
SELECT_APPLIED = "SELECT version, checksum FROM schema_migrations"
INSERT_APPLIED = """
    INSERT INTO schema_migrations (version, name, checksum)
    VALUES (%(version)s, %(name)s, %(checksum)s)
"""


@dataclass(frozen=True)
class Migration:
    """One numbered SQL file."""

    version: str
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        """Return the SHA-256 of the file's text."""
        return hashlib.sha256(self.sql.encode("utf-8")).hexdigest()


def discover(directory: Path = MIGRATIONS_DIR, *, row_level_security: bool = False) -> list[Migration]:
    """Return the migrations in ``directory`` in the order they apply.

    With ``row_level_security``, the optional set in ``directory/rls`` follows
    the main one (versions ``rls/001`` and so on).
    """
    migrations = _discover_set(directory, "")
    if row_level_security:
        migrations += _discover_set(directory / "rls", "rls/")
    return migrations


def _discover_set(directory: Path, prefix: str) -> list[Migration]:
    found: dict[int, Migration] = {}
    for path in directory.glob("*.sql"):
        match = _FILE_NAME.match(path.name)
        if not match:
            raise click.ClickException(f"migration file name must look like 001_name.sql: {path.name}")
        number = int(match.group(1))
        if number in found:
            raise click.ClickException(f"two migrations share number {number}: {path.name}")
        found[number] = Migration(
            prefix + match.group(1), prefix + path.stem, path.read_text(encoding="utf-8")
        )
    return [found[n] for n in sorted(found)]


def apply_migrations(
    dsn: str,
    directory: Path = MIGRATIONS_DIR,
    connect_timeout: int = 10,
    report: Callable[[str], None] = log.info,
    *,
    row_level_security: bool = False,
) -> list[str]:
    """Apply every migration not yet recorded, in one transaction; return the names applied.

    The lock is ``pg_advisory_xact_lock``: it ends with the transaction, so it
    cannot outlive the run, whichever connection the run went through. A
    session lock taken and released in two statements would, through a
    transaction pooler (Neon's pooled URL, PgBouncer in transaction mode),
    be released on another server connection than the one holding it, and
    stay held there. A second run waits for the lock, then finds the files
    recorded and applies nothing; a failing file rolls the whole run back,
    so the schema is the old one or the new one, never between.
    """
    migrations = discover(directory, row_level_security=row_level_security)
    conn = psycopg2.connect(dsn, connect_timeout=connect_timeout, application_name="upload-service-migrate")
    applied_now: list[str] = []
    try:
        with conn, conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (ADVISORY_LOCK_ID,))
            cur.execute(CREATE_MIGRATIONS_TABLE)
            cur.execute(SELECT_APPLIED)
            applied = dict(cur.fetchall())
            for migration in migrations:
                if migration.version in applied:
                    if applied[migration.version] != migration.checksum:
                        report(f"warning: {migration.name} changed after it was applied; not re-run")
                    continue
                cur.execute(migration.sql)
                cur.execute(
                    INSERT_APPLIED,
                    {"version": migration.version, "name": migration.name, "checksum": migration.checksum},
                )
                applied_now.append(migration.name)
    finally:
        conn.close()
    for name in applied_now:
        report(f"applied {name}")
    return applied_now


def pending_migrations(
    dsn: str, directory: Path = MIGRATIONS_DIR, *, row_level_security: bool = False
) -> list[str]:
    """Return the names of migrations not yet applied."""
    conn = psycopg2.connect(dsn, connect_timeout=10)
    try:
        with conn, conn.cursor() as cur:
            cur.execute("SELECT to_regclass('schema_migrations') IS NOT NULL")
            row = cur.fetchone()
            applied = set()
            if row and row[0]:
                cur.execute(SELECT_APPLIED)
                applied = {version for version, _ in cur.fetchall()}
    finally:
        conn.close()
    return [
        m.name for m in discover(directory, row_level_security=row_level_security) if m.version not in applied
    ]


def migration_url(settings: Settings) -> str:
    """The URL migrations run on: the direct one when given (DATABASE_URL_UNPOOLED), else DATABASE_URL.

    Both are safe (the lock is transaction-scoped), but a pooler's own limits
    (Neon's pooler cancels a statement after its query timeout) are meant
    for requests, not for DDL that may wait on a table lock.
    """
    return settings.database_url_unpooled or settings.database_url


db_cli = AppGroup("db", help="Database schema commands.")


@db_cli.command("upgrade")
def upgrade_command() -> None:
    """Apply pending migrations (waits for any other instance doing the same)."""
    settings = current_app.extensions["settings"]
    try:
        names = apply_migrations(
            migration_url(settings), report=click.echo, row_level_security=settings.db_row_level_security
        )
    except psycopg2.Error as exc:
        raise click.ClickException(f"migration failed: {type(exc).__name__}: {exc.pgerror or exc}") from None
    click.echo(f"{len(names)} migration(s) applied; schema is up to date")


@db_cli.command("status")
def status_command() -> None:
    """List migrations not yet applied; exit 1 if there are any."""
    settings = current_app.extensions["settings"]
    names = pending_migrations(migration_url(settings), row_level_security=settings.db_row_level_security)
    for name in names:
        click.echo(f"pending {name}")
    if names:
        raise SystemExit(1)
    click.echo("schema is up to date")


def init_app(app: Flask) -> None:
    """Register ``flask db upgrade`` and ``flask db status``."""
    app.cli.add_command(db_cli)

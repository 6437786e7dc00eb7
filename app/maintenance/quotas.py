"""`flask quota set|show|recount`: per-user limits over the QUOTA_* defaults, and usage from the tables."""

from __future__ import annotations

import click
import psycopg2
from flask import Flask
from flask.cli import AppGroup

from .. import components
from ..config import QuotaLimits
from ..repository.quotas import QuotaRepository

quota_cli = AppGroup("quota", help="Per-user quotas: overrides of the QUOTA_* defaults, and usage.")
LIMITS = {
    "bytes": "--bytes",
    "files": "--files",
    "unsaved_bytes": "--unsaved-bytes",
    "unsaved_uploads": "--unsaved-uploads",
}


class LimitValue(click.ParamType[int | None]):
    """A limit: a whole number of bytes or files, or ``default`` (the QUOTA_* variable's)."""

    name = "limit"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> int | None:
        text = str(value).strip().lower()
        if text == "default":
            return None
        if text.isascii() and text.isdigit() and int(text) <= 2**62:  # ascii: "²" is a digit too
            return int(text)
        self.fail(f"expected a whole number or 'default', got {value!r}", param, ctx)


def _repository() -> tuple[psycopg2.extensions.connection, QuotaRepository]:
    try:
        conn = psycopg2.connect(
            components.settings().database_url, connect_timeout=10, application_name="upload-service-quota"
        )
    except psycopg2.OperationalError:
        raise click.ClickException("cannot connect to the database (DATABASE_URL)") from None
    return conn, QuotaRepository(conn)


def _describe(limit: int | None, default: int | None) -> str:
    if limit is not None:
        return f"{limit} (this user's)"
    return "unlimited" if default is None else f"{default} (default)"


def _show(user_id: str, override: QuotaLimits) -> None:
    settings = components.settings()
    usage, _ = components.uploads().usage(user_id)
    defaults = settings.quotas
    click.echo(
        f"user {user_id}" + ("" if settings.quotas_enforced else "  (quotas are not enforced: QUOTAS=off)")
    )
    click.echo(f"  stored bytes      {usage.bytes:>14}  limit {_describe(override.bytes, defaults.bytes)}")
    click.echo(f"  files             {usage.files:>14}  limit {_describe(override.files, defaults.files)}")
    click.echo(
        f"  unsaved bytes     {usage.unsaved_bytes:>14}  limit "
        f"{_describe(override.unsaved_bytes, defaults.unsaved_bytes)}"
    )
    click.echo(
        f"  unsaved uploads   {usage.unsaved_uploads:>14}  limit "
        f"{_describe(override.unsaved_uploads, defaults.unsaved_uploads)}"
    )


@quota_cli.command("set")
@click.argument("user_id")
@click.option("--bytes", "bytes_", type=LimitValue(), help="Stored bytes (or 'default').")
@click.option("--files", type=LimitValue(), help="Stored files (or 'default').")
@click.option("--unsaved-bytes", type=LimitValue(), help="Bytes reserved by unsaved presigns (or 'default').")
@click.option("--unsaved-uploads", type=LimitValue(), help="Presigns not yet saved (or 'default').")
def set_command(
    user_id: str,
    bytes_: int | None,
    files: int | None,
    unsaved_bytes: int | None,
    unsaved_uploads: int | None,
) -> None:
    """Give USER_ID limits of their own (each option given replaces that one; 'default' removes it)."""
    ctx = click.get_current_context()
    given = {
        name: value
        for name, value in (
            ("bytes", bytes_),
            ("files", files),
            ("unsaved_bytes", unsaved_bytes),
            ("unsaved_uploads", unsaved_uploads),
        )
        if ctx.get_parameter_source("bytes_" if name == "bytes" else name)
        == click.core.ParameterSource.COMMANDLINE
    }
    if not given:
        raise click.ClickException(f"name a limit to set: {', '.join(LIMITS.values())}")
    conn, repo = _repository()
    try:
        override = repo.set_override(user_id, given)
    finally:
        conn.close()
    _show(user_id, override)


@quota_cli.command("show")
@click.argument("user_id")
def show_command(user_id: str) -> None:
    """Show USER_ID's usage and the limits that apply to them."""
    conn, repo = _repository()
    try:
        override = repo.override(user_id)
    finally:
        conn.close()
    _show(user_id, override)


@quota_cli.command("recount")
@click.argument("user_id", required=False)
def recount_command(user_id: str | None) -> None:
    """Recount stored bytes and files from the files tables (every user, or USER_ID)."""
    conn, repo = _repository()
    try:
        changed = repo.recount(user_id)
    finally:
        conn.close()
    click.echo(f"{changed} user(s) corrected")


def init_app(app: Flask) -> None:
    """Register ``flask quota``."""
    app.cli.add_command(quota_cli)

"""`flask storage ...`: set up buckets and their CORS rules, for operators and the local stack."""

from __future__ import annotations

import time

import click
from flask import Flask, current_app
from flask.cli import AppGroup

from .base import StorageError, StorageProvider

storage_cli = AppGroup("storage", help="Bucket set-up for the enabled providers.")


def _providers() -> dict[str, StorageProvider]:
    providers: dict[str, StorageProvider] = current_app.extensions["storage"]
    if not providers:
        raise click.ClickException("no provider is configured")
    return providers


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


@storage_cli.command("cors")
@click.option("--origin", "origins", multiple=True, help="An origin pages upload from; repeat for several.")
def cors_command(origins: tuple[str, ...]) -> None:
    """Allow browser uploads from ORIGINs (default: CORS_ALLOWED_ORIGINS) on every enabled bucket."""
    chosen = list(origins) or list(current_app.extensions["settings"].cors_allowed_origins)
    if not chosen:
        raise click.ClickException("give --origin https://your.site (or set CORS_ALLOWED_ORIGINS)")
    for name, provider in _providers().items():
        try:
            provider.set_cors(chosen)
        except StorageError as exc:
            raise click.ClickException(f"{name}: {exc.message}") from None
        click.echo(f"{name}: CORS on {provider.bucket} allows {', '.join(chosen)}")


def init_app(app: Flask) -> None:
    """Register ``flask storage``."""
    app.cli.add_command(storage_cli)

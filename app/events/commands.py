"""`flask events deliver|list|replay`: the webhook worker, and what operators do with dead events."""

from __future__ import annotations

import signal
import threading
from collections.abc import Sequence
from types import FrameType

import click
import psycopg2
from flask import Flask
from flask.cli import AppGroup
from prometheus_client import start_http_server

from .. import components
from ..metrics import REGISTRY
from ..repository.events import EventRepository
from .delivery import WebhookDeliverer

events_cli = AppGroup("events", help="Webhook events: deliver them, list them, replay dead ones.")
STATES = ("pending", "delivered", "dead")


def _connect(purpose: str) -> psycopg2.extensions.connection:
    try:
        return psycopg2.connect(
            components.settings().database_url,
            connect_timeout=10,
            application_name=f"upload-service-{purpose}",
            keepalives=1,
            keepalives_idle=30,
            keepalives_interval=10,
            keepalives_count=3,
        )
    except psycopg2.OperationalError:
        raise click.ClickException("cannot connect to the database (DATABASE_URL)") from None


def _port(value: str | None) -> int | None:
    if value is None or not value.strip():
        return None
    text = value.strip()
    if text.isascii() and text.isdigit() and 1 <= int(text) <= 65535:  # ascii: "²" is a digit too
        return int(text)
    # The value is the operator's own (never a secret): saying it helps.
    raise click.BadParameter(
        f"expected a port from 1 to 65535 (EVENTS_METRICS_PORT or --metrics-port), not {value!r}"
    )


@events_cli.command("deliver")
@click.option("--once", is_flag=True, help="Deliver what is due now, then exit (else run until stopped).")
@click.option(
    "--metrics-port",
    envvar="EVENTS_METRICS_PORT",
    callback=lambda _ctx, _param, value: _port(value),
    help="Serve this worker's Prometheus metrics at /metrics on this port (or EVENTS_METRICS_PORT).",
)
@click.option(
    "--metrics-host",
    envvar="HOST",
    default="0.0.0.0",  # noqa: S104 - as the servers: a container listens on all interfaces
    show_default=True,
    help="The address the metrics server listens on (or HOST).",
)
def deliver_command(once: bool, metrics_port: int | None, metrics_host: str) -> None:
    """POST the outbox's events to WEBHOOK_URLS, signed; retry, then mark dead. Stops on SIGTERM."""
    try:
        deliverer = WebhookDeliverer.from_settings(components.settings(), lambda: _connect("events"))
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    metrics_server = None
    if metrics_port is not None:
        try:
            metrics_server, _ = start_http_server(metrics_port, addr=metrics_host, registry=REGISTRY)
        except OSError as exc:
            deliverer.close()
            raise click.ClickException(
                f"cannot serve metrics on EVENTS_METRICS_PORT {metrics_port}: {exc.strerror}"
            ) from None
    stop = threading.Event()

    def stop_after_this_event(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, stop_after_this_event)
    try:
        report = deliverer.run(stop, once=once)
    except psycopg2.Error as exc:
        raise click.ClickException(f"database error: {type(exc).__name__}") from None
    finally:
        deliverer.close()
        if metrics_server is not None:
            metrics_server.shutdown()
    click.echo(f"{report.delivered} delivered, {report.retried} to retry, {report.dead} dead")


def _repository() -> tuple[psycopg2.extensions.connection, EventRepository]:
    conn = _connect("events-admin")
    return conn, EventRepository(conn)


@events_cli.command("list")
@click.option(
    "--state", "states", multiple=True, type=click.Choice(STATES), help="Only these states (default: dead)."
)
@click.option("--limit", type=click.IntRange(1, 10_000), default=100, show_default=True)
def list_command(states: Sequence[str], limit: int) -> None:
    """List events, oldest first: dead ones unless --state says otherwise."""
    conn, repo = _repository()
    try:
        events = repo.list_events(states or ("dead",), limit)
    finally:
        conn.close()
    for e in events:
        error = f"  last error: {e.last_error}" if e.last_error else ""
        click.echo(
            f"{e.id}  {e.type:<15}  {e.state:<9}  attempts {e.attempts}  {e.occurred_at:%Y-%m-%d %H:%M:%S}Z"
            f"  {e.provider} {e.object_key}  user {e.user_id}{error}"
        )
    click.echo(f"{len(events)} event(s)")


@events_cli.command("replay")
@click.argument("event_ids", nargs=-1)
@click.option("--all-dead", is_flag=True, help="Replay every dead event.")
def replay_command(event_ids: Sequence[str], all_dead: bool) -> None:
    """Queue events to be sent again: dead ones to the receivers that lack them, delivered ones to all."""
    if not event_ids and not all_dead:
        raise click.ClickException("name the events to replay (their ids), or pass --all-dead")
    conn, repo = _repository()
    try:
        replayed = repo.replay(list(event_ids), all_dead=all_dead)
    finally:
        conn.close()
    unknown = sorted(set(event_ids) - set(replayed))
    click.echo(f"{len(replayed)} event(s) queued again")
    if unknown:
        raise click.ClickException(f"no such event: {', '.join(unknown)}")


def init_app(app: Flask) -> None:
    """Register ``flask events``."""
    app.cli.add_command(events_cli)

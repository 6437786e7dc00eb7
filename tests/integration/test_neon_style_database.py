"""A Neon-shaped database: TCP, TLS required, SCRAM password, channel binding required."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg2
import pytest

from app import create_app
from app.components import get_database
from app.migrations import apply_migrations
from devstack.services import NetworkPostgres
from tests.helpers import presign, put, save

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def network_postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NetworkPostgres]:
    server = NetworkPostgres(Path(tmp_path_factory.mktemp("netpg")))
    server.start()
    yield server
    server.stop()


def test_neon_style_url_connects_with_tls_and_channel_binding(network_postgres: NetworkPostgres) -> None:
    if not network_postgres.tls:
        pytest.skip("this machine's PostgreSQL build has no TLS (install Debian's postgresql for it)")
    assert "channel_binding=require" in network_postgres.url()
    conn = psycopg2.connect(network_postgres.url())
    with conn.cursor() as cur:
        cur.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        assert cur.fetchone() == (True,)
    conn.close()


def test_wrong_password_is_refused_by_the_server(network_postgres: NetworkPostgres) -> None:
    with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
        psycopg2.connect(network_postgres.url().replace(network_postgres.password, "wrong"))


def test_service_runs_the_upload_flow_on_a_neon_style_url(
    network_postgres: NetworkPostgres, app_env: dict[str, str]
) -> None:
    url = network_postgres.url()
    apply_migrations(url)
    app = create_app({**app_env, "DATABASE_URL": url})
    try:
        client = app.test_client()
        presigned: dict[str, Any] = presign(client, "s3")
        assert put(presigned, b"over tls").status_code == 200
        assert save(client, "s3", presigned["objectKey"]).status_code == 201
    finally:
        get_database(app).close()

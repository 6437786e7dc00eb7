"""Through a real PgBouncer in transaction mode (Neon's pooled URL): no session state, nothing leaks.

In transaction pooling each transaction may run on another server
connection, so a session-level ``SET`` would be lost for our next statement
and left behind for another client's. The pool's statements carry their
timeouts with them (``SET LOCAL``, app/db.py's ``bounded_cursor``).
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import psycopg2
import pytest
import requests
from flask import Flask

from app.db import Database, DatabaseUnavailable
from app.migrations import apply_migrations
from devstack.services import free_port, port_is_free

pytestmark = pytest.mark.integration

POOLER_USER = "pgserver"  # PgBouncer refuses to run as root


@pytest.fixture(scope="module")
def pgbouncer(server_dsn: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str], str]]:
    """Start Debian's pgbouncer, pool_mode=transaction, in front of the tests' server.

    Yields a function that turns a database URL of that server into the same
    database's URL through the pooler.
    """
    binary = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
    if not Path(binary).exists():
        pytest.fail(
            "pgbouncer not found: make install installs it as root (Debian: apt-get install pgbouncer)"
        )
    parts = urlsplit(server_dsn)
    socket_dir = parse_qs(parts.query).get("host", [parts.hostname or "127.0.0.1"])[0]
    server_port = parts.port or 5432
    user = parts.username or "postgres"
    workdir = tmp_path_factory.mktemp("pgbouncer")
    port = free_port()
    (workdir / "users.txt").write_text(f'"{user}" ""\n')
    (workdir / "pgbouncer.ini").write_text(
        "[databases]\n"
        f"* = host={socket_dir} port={server_port}\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
        f"auth_type = trust\nauth_file = {workdir / 'users.txt'}\n"
        "pool_mode = transaction\ndefault_pool_size = 4\nmax_client_conn = 200\n"
        # Clients' own parameters (psycopg2 sends application_name) are passed on.
        "ignore_startup_parameters = extra_float_digits\n"
        f"logfile = {workdir / 'pgbouncer.log'}\npidfile = {workdir / 'pgbouncer.pid'}\n"
    )
    if os.geteuid() == 0:
        from pgserver.utils import ensure_user_exists

        ensure_user_exists(POOLER_USER)
    entry = pwd.getpwnam(POOLER_USER) if os.geteuid() == 0 else pwd.getpwuid(os.geteuid())
    for item in [workdir, *workdir.iterdir()]:
        os.chown(item, entry.pw_uid, entry.pw_gid)
    args = [binary, str(workdir / "pgbouncer.ini")]
    if os.geteuid() == 0:
        args[1:1] = ["-u", POOLER_USER]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 10
    while port_is_free(port):
        log = workdir / "pgbouncer.log"
        assert proc.poll() is None and time.monotonic() < deadline, (
            f"pgbouncer did not start:\n{log.read_text() if log.exists() else ''}"
        )
        time.sleep(0.1)

    def pooled(database_url: str) -> str:
        name = psycopg2.extensions.parse_dsn(database_url)["dbname"]
        return f"postgresql://{user}@127.0.0.1:{port}/{name}"

    yield pooled
    proc.terminate()
    proc.wait(10)


@pytest.fixture
def pooled_url(pgbouncer: Callable[[str], str], make_database: Callable[[], str]) -> str:
    direct = make_database()
    apply_migrations(direct)
    return pgbouncer(direct)


def test_a_statement_past_the_timeout_is_cancelled_through_the_pooler(pooled_url: str) -> None:
    database = Database(pooled_url, size=2, pool_timeout=5, connect_timeout=5, statement_timeout_ms=300)
    started = time.monotonic()
    with pytest.raises(DatabaseUnavailable, match="database query timed out"):
        database.run(lambda cur: cur.execute("SELECT pg_sleep(3)"))
    assert time.monotonic() - started < 2
    database.close()


def test_the_pools_timeouts_never_stay_on_the_poolers_server_connections(pooled_url: str) -> None:
    database = Database(pooled_url, size=4, pool_timeout=5, connect_timeout=5, statement_timeout_ms=1234)

    def timeout_seen(cur: psycopg2.extensions.cursor) -> str:
        cur.execute("SHOW statement_timeout")
        return str(cur.fetchone()[0])  # type: ignore[index]

    # Each of our statements runs under our timeout...
    assert {database.run(timeout_seen) for _ in range(20)} == {"1234ms"}
    database.close()
    # ...and another client of the same pooler, on the same server connections, sees none of it.
    seen = set()
    for _ in range(20):
        with psycopg2.connect(pooled_url) as other:
            other.autocommit = True
            with other.cursor() as cur:
                cur.execute("SHOW statement_timeout")
                seen.add(cur.fetchone()[0])  # type: ignore[index]
        other.close()
    assert seen == {"0"}


def test_the_upload_flow_and_listing_work_through_the_pooler(
    pooled_url: str, make_app: Callable[..., Flask]
) -> None:
    client = make_app(DATABASE_URL=pooled_url).test_client()
    presigned = client.post(
        "/s3/presign-upload", json={"fileName": "pooled.txt", "contentType": "text/plain"}
    )
    assert presigned.status_code == 200
    body = presigned.get_json()
    put = requests.put(body["presignedUrl"], data=b"through the pooler", headers=body["headers"], timeout=10)
    assert put.status_code == 200
    saved = client.post("/s3/save-metadata", json={"objectKey": body["objectKey"]})
    assert saved.status_code == 201
    listed = client.get("/s3/files")
    assert listed.status_code == 200
    assert [f["objectKey"] for f in listed.get_json()["files"]] == [body["objectKey"]]
    ready = client.get("/readyz")
    assert ready.status_code == 200

"""`flask storage reconcile P`: a bucket against its table, on buckets of its own seeded with orphans."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import psycopg2
import psycopg2.extensions
import pytest
from flask import Flask

from app.components import get_provider
from app.maintenance.reconcile import reconcile
from app.repository import MaintenanceRepository
from app.storage import StorageProvider
from tests.helpers import PROVIDERS, presign, put, recorder, rows, upload

pytestmark = pytest.mark.integration

BUCKET_VARIABLES = {
    "s3": "S3_BUCKET_NAME",
    "r2": "R2_BUCKET_NAME",
    "b2": "B2_BUCKET_NAME",
    "azure": "AZURE_STORAGE_CONTAINER_NAME",
}


@pytest.fixture(scope="module")
def own_buckets(app_env: dict[str, str]) -> Iterator[dict[str, str]]:
    """Return variables that give each provider a bucket no other test writes to."""
    from app import create_app
    from tests.conftest import close_app

    suffix = uuid.uuid4().hex[:8]
    variables = {name: f"rec-{provider}-{suffix}" for provider, name in BUCKET_VARIABLES.items()}
    setup = create_app({**app_env, **variables})
    result = setup.test_cli_runner().invoke(args=["storage", "create-buckets"])
    assert result.exit_code == 0, result.output
    yield variables
    close_app(setup)


@pytest.fixture
def isolated(make_app: Callable[..., Flask], own_buckets: dict[str, str]) -> Flask:
    """Return an app on the reconcile buckets, emptied."""
    app = make_app(**own_buckets)
    with app.app_context():
        for provider in PROVIDERS:
            storage = get_provider(provider)
            keys = [o.key for page in storage.list_objects() for o in page]
            assert storage.delete_many(keys) == []
    return app


def seed(app: Flask, provider: str, db: psycopg2.extensions.connection) -> dict[str, str]:
    """A saved file, an orphan object whose presign record never landed, and a row whose object is gone."""
    client = app.test_client()
    kept = upload(client, provider, b"kept", "kept.txt")
    lost = upload(client, provider, b"lost", "lost.txt")
    if provider == "azure":
        # In one Put Blob, so the orphan is at its key (an upload in blocks would be a staging
        # blob, .staging/<key>: an orphan too, under that name).
        body = {"fileName": "orphan.txt", "contentType": "text/plain", "fileSize": 6, "singlePut": True}
        orphan = client.post("/azure/presign-upload", json=body).get_json()
    else:
        orphan = presign(client, provider, "orphan.txt", "text/plain", file_size=6)
    assert put(orphan, b"orphan").status_code in (200, 201)
    assert recorder(app).flush()
    with db.cursor() as cur:  # as if the worker that presigned it had crashed
        cur.execute("DELETE FROM pending_uploads WHERE object_key = %s", (orphan["objectKey"],))
    with app.app_context():
        get_provider(provider).delete(lost["objectKey"])
    return {
        "kept": kept["objectKey"],
        "lost": lost["objectKey"],
        "orphan": orphan["objectKey"],
        "lost_id": lost["id"],
    }


def keys_in(storage: StorageProvider) -> set[str]:
    return {o.key for page in storage.list_objects() for o in page}


@pytest.mark.parametrize("provider", PROVIDERS)
def test_reconcile_reports_without_changing_anything(
    isolated: Flask, db: psycopg2.extensions.connection, provider: str
) -> None:
    seeded = seed(isolated, provider, db)
    result = isolated.test_cli_runner().invoke(args=["storage", "reconcile", provider, "--grace", "0s"])
    assert result.exit_code == 1, result.output  # findings remain
    assert f"object without row: {seeded['orphan']} (6 bytes, " in result.output
    assert f"row without object: {provider} id {seeded['lost_id']} {seeded['lost']}" in result.output
    assert "objects listed       2" in result.output
    assert "objects with no row  1      0                   1" in result.output
    assert "rows with no object  1      0                   1" in result.output
    with isolated.app_context():
        assert keys_in(get_provider(provider)) == {seeded["kept"], seeded["orphan"]}
    assert len(rows(db, provider)) == 2


@pytest.mark.parametrize("provider", PROVIDERS)
def test_reconcile_fix_deletes_orphans_and_removes_rows_whose_object_is_gone(
    isolated: Flask, db: psycopg2.extensions.connection, provider: str
) -> None:
    seeded = seed(isolated, provider, db)
    runner = isolated.test_cli_runner()
    result = runner.invoke(args=["storage", "reconcile", provider, "--fix", "--grace", "0s"])
    assert result.exit_code == 0, result.output
    assert "fixed" in result.output
    assert "objects with no row  1      0                   1" in result.output
    with isolated.app_context():
        assert keys_in(get_provider(provider)) == {seeded["kept"]}
    assert [r["id"] for r in rows(db, provider)] != [seeded["lost_id"]]
    assert len(rows(db, provider)) == 1
    # Its owner deleting it now is told it is gone (204), as after any delete.
    client = isolated.test_client()
    assert client.delete(f"/{provider}/files/{seeded['lost_id']}").status_code == 204
    # The orphan is gone: a late save of it is told so (410), as it would be had its HEAD
    # come before the delete (the claim refuses it), and records nothing.
    late = client.post(f"/{provider}/save-metadata", json={"objectKey": seeded["orphan"]})
    assert late.status_code == 410
    assert late.get_json()["error"] == (
        "objectKey's upload was cleaned up (abandoned, or refused at save); presign the file again"
    )
    with db.cursor() as cur:
        cur.execute("SELECT sweep_claimed_at IS NOT NULL FROM pending_uploads WHERE object_key = %s",
                    (seeded["orphan"],))  # fmt: skip
        assert cur.fetchone() == (True,)

    clean = runner.invoke(args=["storage", "reconcile", provider, "--grace", "0s"])
    assert clean.exit_code == 0, clean.output
    assert "objects with no row  0" in clean.output
    assert "rows with no object  0" in clean.output


def test_reconcile_leaves_young_findings_alone(isolated: Flask, db: psycopg2.extensions.connection) -> None:
    seeded = seed(isolated, "s3", db)
    result = isolated.test_cli_runner().invoke(args=["storage", "reconcile", "s3", "--fix"])  # grace 24h
    assert result.exit_code == 0, result.output
    assert "recent, left alone" in result.output
    assert "objects with no row  1      1                   0" in result.output
    with isolated.app_context():
        assert seeded["orphan"] in keys_in(get_provider("s3"))
    assert len(rows(db, "s3")) == 2


def test_reconcile_pages_through_listing_and_results(
    isolated: Flask, database_url: str, db: psycopg2.extensions.connection
) -> None:
    client = isolated.test_client()
    for i in range(5):
        upload(client, "r2", b"%d" % i, f"{i}.txt")
    orphans = []
    for i in range(5):
        presigned = presign(client, "r2", f"o{i}.txt", "text/plain", file_size=1)
        put(presigned, b"o")
        orphans.append(presigned["objectKey"])
    conn = psycopg2.connect(database_url)
    lines: list[str] = []
    try:
        with isolated.app_context():
            report = reconcile(
                MaintenanceRepository(conn), get_provider("r2"), 0, fix=True, say=lines.append, page_size=2
            )
    finally:
        conn.close()
    assert report.objects_listed == 10
    assert report.orphan_objects == 5
    assert report.deleted_objects == 5
    assert report.unresolved == 0
    assert sorted(line.split()[3] for line in lines) == sorted(orphans)


def test_reconcile_refuses_a_provider_that_is_not_configured(make_app: Callable[..., Flask]) -> None:
    app = make_app(R2_BUCKET_NAME=None)
    result = app.test_cli_runner().invoke(args=["storage", "reconcile", "r2"])
    assert result.exit_code == 1
    assert "r2 is not configured: set R2_BUCKET_NAME" in result.output


def test_maintenance_refuses_a_role_that_row_level_security_restricts(
    make_app: Callable[..., Flask], rls_database: tuple[str, str]
) -> None:
    _, app_dsn = rls_database
    app = make_app(DATABASE_URL=app_dsn, DB_ROW_LEVEL_SECURITY="on")
    for args in (["storage", "sweep"], ["storage", "reconcile", "s3"]):
        result = app.test_cli_runner().invoke(args=args)
        assert result.exit_code == 1
        assert "row-level security hides other users' rows from this database role" in result.output

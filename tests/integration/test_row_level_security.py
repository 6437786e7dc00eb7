"""Optional row-level security: as a non-owner role, a transaction sees only its user's rows."""

from __future__ import annotations

from collections.abc import Callable

import psycopg2
import psycopg2.extensions
import pytest
from flask import Flask

from app.migrations import apply_migrations, pending_migrations
from tests.helpers import PROVIDERS, presign, put, recorder, save, upload

pytestmark = pytest.mark.integration


def visible_rows(dsn: str, table: str, as_user: str | None) -> int:
    conn = psycopg2.connect(dsn)
    with conn, conn.cursor() as cur:
        if as_user is not None:
            cur.execute("SELECT set_config('app.user_id', %s, true)", (as_user,))
        cur.execute(f"SELECT count(*) FROM {table}")  # noqa: S608 - fixed names
        row = cur.fetchone()
    conn.close()
    return int(row[0]) if row else 0


def test_rls_migration_is_only_applied_when_asked(make_database: Callable[[], str]) -> None:
    dsn = make_database()
    apply_migrations(dsn)
    assert pending_migrations(dsn) == []
    assert pending_migrations(dsn, row_level_security=True) == [
        "rls/001_row_level_security",
        "rls/002_deleted_files",
    ]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_upload_flow_works_under_rls_and_rows_stay_private(
    make_app: Callable[..., Flask], rls_database: tuple[str, str], provider: str
) -> None:
    owner_dsn, app_dsn = rls_database
    app = make_app(DATABASE_URL=app_dsn, DB_ROW_LEVEL_SECURITY="on")
    client = app.test_client()
    presigned = presign(client, provider, user="alice")
    put(presigned, b"private")
    assert save(client, provider, presigned["objectKey"], user="alice").status_code == 201
    assert save(client, provider, presigned["objectKey"], user="alice").status_code == 200

    # Bob cannot claim it; the answer is the same whether or not the key exists.
    response = save(client, provider, presigned["objectKey"], user="bob")
    assert response.status_code == 403
    assert response.get_json()["error"] == "objectKey was not issued to this user"

    table = {"s3": "s3_files", "r2": "r2_files", "b2": "b2_files", "azure": "azure_files"}[provider]
    assert visible_rows(app_dsn, table, "alice") == 1
    assert visible_rows(app_dsn, table, "bob") == 0
    assert visible_rows(app_dsn, table, None) == 0  # a query that forgets to say whose: nothing
    assert recorder(app).flush()  # presign records are written under RLS too, as their user
    assert visible_rows(app_dsn, "pending_uploads", "alice") == 1
    assert visible_rows(app_dsn, "pending_uploads", "bob") == 0
    assert visible_rows(owner_dsn, table, None) == 1  # the owner (migrations, operators) sees all


def test_rls_refuses_writing_a_row_for_another_user(rls_database: tuple[str, str]) -> None:
    _, app_dsn = rls_database
    conn = psycopg2.connect(app_dsn)
    try:
        with pytest.raises(psycopg2.errors.InsufficientPrivilege), conn, conn.cursor() as cur:
            cur.execute("SELECT set_config('app.user_id', 'bob', true)")
            cur.execute("INSERT INTO s3_files (object_key, file_url, user_id) VALUES ('k', 'u', 'alice')")
    finally:
        conn.close()


@pytest.mark.parametrize("provider", ["s3", "azure"])
def test_listing_reading_and_deleting_work_under_rls(
    make_app: Callable[..., Flask], rls_database: tuple[str, str], provider: str
) -> None:
    _, app_dsn = rls_database
    client = make_app(DATABASE_URL=app_dsn, DB_ROW_LEVEL_SECURITY="on").test_client()
    saved = upload(client, provider, b"alice's", "a.txt", user="alice")
    alice, bob = {"X-User-Id": "alice"}, {"X-User-Id": "bob"}

    listed = client.get(f"/{provider}/files", headers=alice).get_json()["files"]
    assert [f["id"] for f in listed] == [saved["id"]]
    assert client.get(f"/{provider}/files", headers=bob).get_json()["files"] == []
    assert client.get(f"/{provider}/files/{saved['id']}", headers=bob).status_code == 404

    assert client.delete(f"/{provider}/files/{saved['id']}", headers=bob).status_code == 404
    assert client.delete(f"/{provider}/files/{saved['id']}", headers=alice).status_code == 204
    assert client.delete(f"/{provider}/files/{saved['id']}", headers=alice).status_code == 204
    assert client.delete(f"/{provider}/files/{saved['id']}", headers=bob).status_code == 404
    assert visible_rows(app_dsn, "deleted_files", "alice") == 1
    assert visible_rows(app_dsn, "deleted_files", "bob") == 0

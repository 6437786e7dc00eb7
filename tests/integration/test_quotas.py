"""Per-user quotas against PostgreSQL: reservations at presign, real sizes at save, under concurrency."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import psycopg2
import pytest
from flask import Flask

from app.components import settings as app_settings
from app.migrations import apply_migrations
from tests.helpers import presign, put, recorder, save, upload

pytestmark = pytest.mark.integration


@pytest.fixture
def quota_db(make_database: Callable[[], str]) -> str:
    """A database of its own: usage starts at nothing."""
    url = make_database()
    apply_migrations(url)
    return url


@pytest.fixture
def quota_app(make_app: Callable[..., Flask], quota_db: str) -> Callable[..., Flask]:
    def make(**limits: str) -> Flask:
        return make_app(DATABASE_URL=quota_db, **limits)

    return make


def usage(app: Flask, user: str) -> dict[str, Any]:
    answer = app.test_client().get("/usage", headers={"X-User-Id": user})
    assert answer.status_code == 200
    body: dict[str, Any] = answer.get_json()
    return body


def recount(database_url: str, user: str) -> dict[str, int]:
    """The user's usage counted from the tables themselves."""
    with psycopg2.connect(database_url) as conn, conn.cursor() as cur:
        cur.execute(
            """
            SELECT coalesce(sum(size_bytes), 0), count(*) FROM (
                SELECT user_id, size_bytes FROM s3_files
                UNION ALL SELECT user_id, size_bytes FROM r2_files
                UNION ALL SELECT user_id, size_bytes FROM b2_files
                UNION ALL SELECT user_id, size_bytes FROM azure_files
            ) AS f WHERE user_id = %s
            """,
            (user,),
        )
        stored_bytes, files = cur.fetchone()  # type: ignore[misc]
        cur.execute(
            "SELECT coalesce(sum(reserved_bytes), 0), count(*) FROM pending_uploads WHERE user_id = %s"
            " AND reserved_bytes IS NOT NULL AND saved_at IS NULL AND sweep_claimed_at IS NULL",
            (user,),
        )
        unsaved_bytes, unsaved = cur.fetchone()  # type: ignore[misc]
    conn.close()
    return {"bytes": stored_bytes, "files": files, "unsavedBytes": unsaved_bytes, "unsavedUploads": unsaved}


def presign_answer(app: Flask, user: str, size: int | None = 10, name: str = "q.txt") -> Any:
    body: dict[str, Any] = {"fileName": name, "contentType": "text/plain"}
    if size is not None:
        body["fileSize"] = size
    return app.test_client().post("/s3/presign-upload", json=body, headers={"X-User-Id": user})


def test_usage_reports_what_is_stored_and_reserved_and_the_limits(quota_app: Callable[..., Flask]) -> None:
    app = quota_app(QUOTA_BYTES_PER_USER="1000", QUOTA_UNSAVED_UPLOADS_PER_USER="3")
    assert usage(app, "ann") == {
        "success": True,
        "usage": {"bytes": 0, "files": 0, "unsavedBytes": 0, "unsavedUploads": 0},
        "limits": {"bytes": 1000, "files": None, "unsavedBytes": None, "unsavedUploads": 3},
    }
    client = app.test_client()
    saved = upload(client, "s3", b"0123456789", "ten.txt", user="ann")
    pending = presign(client, "r2", "later.txt", "text/plain", file_size=25, user="ann")
    assert usage(app, "ann")["usage"] == {"bytes": 10, "files": 1, "unsavedBytes": 25, "unsavedUploads": 1}
    assert usage(app, "ann")["usage"] == recount(app_settings(app).database_url, "ann")
    # A deleted file frees its bytes.
    assert client.delete(f"/s3/files/{saved['id']}", headers={"X-User-Id": "ann"}).status_code == 204
    assert put(pending, b"x" * 25).status_code == 200
    assert save(client, "r2", pending["objectKey"], user="ann").status_code == 201
    assert usage(app, "ann")["usage"] == {"bytes": 25, "files": 1, "unsavedBytes": 0, "unsavedUploads": 0}
    assert usage(app, "ann")["usage"] == recount(app_settings(app).database_url, "ann")


def test_without_quotas_usage_is_counted_and_every_limit_is_null(quota_app: Callable[..., Flask]) -> None:
    app = quota_app()
    upload(app.test_client(), "s3", b"abc", "abc.txt", user="free")
    body = usage(app, "free")
    assert body["usage"] == {"bytes": 3, "files": 1, "unsavedBytes": 0, "unsavedUploads": 0}
    assert body["limits"] == {"bytes": None, "files": None, "unsavedBytes": None, "unsavedUploads": None}


def test_each_limit_refuses_with_its_status_and_numbers(quota_app: Callable[..., Flask]) -> None:
    app = quota_app(
        QUOTA_BYTES_PER_USER="100",
        QUOTA_FILES_PER_USER="3",
        QUOTA_UNSAVED_BYTES_PER_USER="60",
        QUOTA_UNSAVED_UPLOADS_PER_USER="2",
    )
    big = presign_answer(app, "ben", size=101)
    assert big.status_code == 413
    assert big.get_json()["error"] == (
        "storage quota exceeded: this file (101 bytes) is larger than what is left of your 100 bytes "
        "(0 stored, 0 reserved by uploads not yet saved: 100 left)"
    )
    unsaved_big = presign_answer(app, "ben", size=61)
    assert unsaved_big.status_code == 413
    assert unsaved_big.get_json()["error"] == (
        "unsaved-upload quota exceeded: this file (61 bytes) is larger than what is left of your 60 bytes "
        "for uploads not yet saved (0 reserved: 60 left); save or abandon the uploads in flight"
    )
    assert presign_answer(app, "ben", size=10).status_code == 200
    assert presign_answer(app, "ben", size=10).status_code == 200
    third = presign_answer(app, "ben", size=10)
    assert third.status_code == 403
    assert third.get_json()["error"] == (
        "unsaved-upload quota exceeded: at most 2 uploads presigned and not yet saved (2 now); "
        "save or abandon the uploads in flight"
    )
    # Without a declared size, a presign reserves the most one file may be (MAX_UPLOAD_BYTES).
    undeclared = quota_app(QUOTA_BYTES_PER_USER="1000000")
    answer = presign_answer(undeclared, "cid", size=None)
    assert answer.status_code == 413
    assert f"this file ({app_settings(undeclared).max_upload_bytes} bytes)" in answer.get_json()["error"]


def test_the_file_count_limit_counts_stored_files_and_unsaved_uploads(
    quota_app: Callable[..., Flask],
) -> None:
    app = quota_app(QUOTA_FILES_PER_USER="2")
    upload(app.test_client(), "s3", b"one", "one.txt", user="dee")
    assert presign_answer(app, "dee").status_code == 200
    refused = presign_answer(app, "dee")
    assert refused.status_code == 403
    assert (
        refused.get_json()["error"]
        == "file quota exceeded: at most 2 files (1 stored, 1 uploads not yet saved)"
    )


def test_concurrent_presigns_from_two_replicas_never_pass_the_limit(quota_app: Callable[..., Flask]) -> None:
    replicas = [quota_app(QUOTA_UNSAVED_UPLOADS_PER_USER="5"), quota_app(QUOTA_UNSAVED_UPLOADS_PER_USER="5")]
    statuses: list[int] = []
    lock = threading.Lock()
    start = threading.Barrier(24)

    def run(n: int) -> None:
        start.wait()
        status = presign_answer(replicas[n % 2], "eve", size=1, name=f"c{n}.txt").status_code
        with lock:
            statuses.append(status)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(24)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(statuses) == [200] * 5 + [403] * 19
    assert usage(replicas[0], "eve")["usage"]["unsavedUploads"] == 5


def test_concurrent_saves_never_store_more_than_a_lowered_limit(quota_app: Callable[..., Flask]) -> None:
    replicas = [quota_app(QUOTA_BYTES_PER_USER="10000"), quota_app(QUOTA_BYTES_PER_USER="10000")]
    client = replicas[0].test_client()
    keys = []
    for i in range(10):
        presigned = presign(client, "s3", f"s{i}.txt", "text/plain", file_size=100, user="fay")
        assert put(presigned, b"y" * 100).status_code == 200
        keys.append(presigned["objectKey"])
    # The operator lowers fay's quota while her uploads are in flight: 3 of them fit.
    result = replicas[0].test_cli_runner().invoke(args=["quota", "set", "fay", "--bytes", "350"])
    assert result.exit_code == 0, result.output
    assert "limit 350 (this user's)" in result.output
    statuses: list[int] = []
    errors: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(10)

    def run(n: int) -> None:
        start.wait()
        answer = (
            replicas[n % 2]
            .test_client()
            .post("/s3/save-metadata", json={"objectKey": keys[n]}, headers={"X-User-Id": "fay"})
        )
        with lock:
            statuses.append(answer.status_code)
            if answer.status_code != 201:
                errors.append(answer.get_json()["error"])

    threads = [threading.Thread(target=run, args=(n,)) for n in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(statuses) == [201] * 3 + [413] * 7
    assert all(e.startswith("storage quota exceeded: this file (100 bytes) is larger than") for e in errors)
    assert all(e.endswith("; it was deleted") for e in errors)
    database_url = app_settings(replicas[0]).database_url
    assert usage(replicas[0], "fay")["usage"] == {
        "bytes": 300,
        "files": 3,
        "unsavedBytes": 0,
        "unsavedUploads": 0,
    }
    assert usage(replicas[0], "fay")["usage"] == recount(database_url, "fay")


def test_a_swept_upload_frees_its_reservation(quota_app: Callable[..., Flask]) -> None:
    app = quota_app(QUOTA_UNSAVED_UPLOADS_PER_USER="1")
    first = presign_answer(app, "gus")
    assert first.status_code == 200
    assert presign_answer(app, "gus").status_code == 403
    with psycopg2.connect(app_settings(app).database_url) as conn, conn.cursor() as cur:
        cur.execute("UPDATE pending_uploads SET expires_at = now() - interval '1 second'")
    conn.close()
    assert app.test_cli_runner().invoke(args=["storage", "sweep", "--older-than", "0s"]).exit_code == 0
    assert presign_answer(app, "gus").status_code == 200
    assert usage(app, "gus")["usage"]["unsavedUploads"] == 1


def test_a_refused_save_frees_its_reservation(quota_app: Callable[..., Flask]) -> None:
    app = quota_app(QUOTA_UNSAVED_UPLOADS_PER_USER="1")
    client = app.test_client()
    page = b"<!DOCTYPE html><html><script>alert(1)</script></html>"
    presigned = presign(client, "s3", "page.txt", "text/plain", file_size=len(page), user="hal")
    assert put(presigned, page).status_code == 200
    assert save(client, "s3", presigned["objectKey"], user="hal").status_code == 415
    assert usage(app, "hal")["usage"]["unsavedUploads"] == 0
    assert presign_answer(app, "hal").status_code == 200


def test_quota_commands_set_show_and_recount(quota_app: Callable[..., Flask]) -> None:
    app = quota_app(QUOTA_BYTES_PER_USER="1000")
    runner = app.test_cli_runner()
    upload(app.test_client(), "s3", b"12345", "five.txt", user="ivy")
    set_files = runner.invoke(args=["quota", "set", "ivy", "--files", "7"])
    assert set_files.exit_code == 0
    shown = runner.invoke(args=["quota", "show", "ivy"])
    assert "stored bytes                   5  limit 1000 (default)" in shown.output
    assert "files                          1  limit 7 (this user's)" in shown.output
    assert "unsaved uploads                0  limit unlimited" in shown.output
    assert usage(app, "ivy")["limits"]["files"] == 7
    back = runner.invoke(args=["quota", "set", "ivy", "--files", "default"])
    assert back.exit_code == 0 and usage(app, "ivy")["limits"]["files"] is None
    bad = runner.invoke(args=["quota", "set", "ivy", "--bytes", "lots"])
    assert bad.exit_code == 2
    assert "expected a whole number or 'default', got 'lots'" in bad.output
    for odd in ("²", "-1", "1e6", str(2**62 + 1)):  # "²" passes str.isdigit() but not int()
        refused = runner.invoke(args=["quota", "set", "ivy", "--bytes", odd])
        assert refused.exit_code == 2, refused.output
        assert f"expected a whole number or 'default', got '{odd}'" in refused.output
    none = runner.invoke(args=["quota", "set", "ivy"])
    assert none.exit_code == 1
    assert "name a limit to set: --bytes, --files, --unsaved-bytes, --unsaved-uploads" in none.output
    # A row written behind the service's back (a guide's own code) is found by a recount.
    database_url = app_settings(app).database_url
    with psycopg2.connect(database_url) as conn, conn.cursor() as cur:
        cur.execute(
            "INSERT INTO s3_files (object_key, file_url, user_id, size_bytes)"
            " VALUES ('guide.txt', 'u', 'ivy', 40)"
        )
    conn.close()
    assert usage(app, "ivy")["usage"]["bytes"] == 5
    counted = runner.invoke(args=["quota", "recount"])
    assert "1 user(s) corrected" in counted.output
    assert (
        usage(app, "ivy")["usage"]
        == recount(database_url, "ivy")
        == {
            "bytes": 45,
            "files": 2,
            "unsavedBytes": 0,
            "unsavedUploads": 0,
        }
    )
    assert recorder(app).flush()

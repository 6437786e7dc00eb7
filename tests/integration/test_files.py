"""Listing, reading, downloading and deleting saved files, for each provider, against the emulators."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import unquote

import psycopg2.extensions
import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient

from app.components import get_provider
from app.uploads.files import content_disposition
from tests import corpus
from tests.helpers import PROVIDERS, rows, upload

pytestmark = pytest.mark.integration


def as_user(user: str) -> dict[str, str]:
    return {"X-User-Id": user}


@pytest.mark.parametrize("provider", PROVIDERS)
def test_download_url_returns_the_uploaded_bytes_as_an_attachment(client: FlaskClient, provider: str) -> None:
    data = b"private bytes from " + provider.encode()
    saved = upload(client, provider, data, 'résumé 2026 "final".txt', "text/plain")
    assert saved["downloadUrl"] != saved["fileUrl"]  # private bucket: signed

    fetched = requests.get(saved["downloadUrl"], timeout=10)
    assert fetched.status_code == 200, fetched.text
    assert fetched.content == data
    disposition = fetched.headers["Content-Disposition"]
    assert disposition.startswith("attachment;")
    assert "filename*=UTF-8''r%C3%A9sum%C3%A9%202026%20%22final%22.txt" in disposition
    assert 'filename="r_sum_ 2026 _final_.txt"' in disposition

    # Unsigned, the same object is refused: the bucket is private.
    assert requests.get(saved["fileUrl"], timeout=10).status_code in (401, 403, 404)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_images_and_pdfs_are_served_inline(client: FlaskClient, provider: str) -> None:
    saved = upload(client, provider, corpus.png(), "cat.png", "image/png")
    fetched = requests.get(saved["downloadUrl"], timeout=10)
    assert fetched.status_code == 200
    assert fetched.headers["Content-Disposition"].startswith("inline;")


def test_content_disposition_forces_attachment_for_what_a_browser_would_run() -> None:
    for content_type in ("text/html", "image/svg+xml", "application/xhtml+xml", None, "IMAGE/SVG+XML"):
        assert content_disposition("a.html", content_type).startswith("attachment;")
    for content_type in ("image/png", "image/JPEG", "application/pdf; x=y"):
        assert content_disposition("a", content_type).startswith("inline;")
    header = content_disposition('x\\y"\r\n😀.txt', "text/plain")
    assert header == "attachment; filename=\"x_y____.txt\"; filename*=UTF-8''x%5Cy%22%0D%0A%F0%9F%98%80.txt"
    assert unquote(header.split("''", 1)[1]) == 'x\\y"\r\n😀.txt'


@pytest.mark.parametrize("provider", PROVIDERS)
def test_get_file_and_download_redirect(client: FlaskClient, provider: str) -> None:
    saved = upload(client, provider, b"redirect me", "a.txt")
    response = client.get(f"/{provider}/files/{saved['id']}")
    assert response.status_code == 200
    described = response.get_json()["file"]
    assert {k: v for k, v in described.items() if k != "downloadUrl"} == {
        k: v for k, v in saved.items() if k != "downloadUrl"
    }

    redirect = client.get(f"/{provider}/files/{saved['id']}/download")
    assert redirect.status_code == 302
    assert redirect.headers["Cache-Control"] == "no-store"
    assert requests.get(redirect.headers["Location"], timeout=10).content == b"redirect me"


@pytest.mark.parametrize("provider", PROVIDERS)
def test_listing_is_newest_first_and_matches_what_save_returned(client: FlaskClient, provider: str) -> None:
    first = upload(client, provider, b"1", "one.txt")
    second = upload(client, provider, b"22", "two.txt")
    upload(client, provider, b"other", "theirs.txt", user="someone_else")

    response = client.get(f"/{provider}/files")
    assert response.status_code == 200
    body = response.get_json()
    assert body["success"] is True
    assert body["nextCursor"] is None
    assert [f["id"] for f in body["files"]] == [second["id"], first["id"]]
    listed = body["files"][1]
    assert set(listed) == set(first)
    assert {k: v for k, v in listed.items() if k != "downloadUrl"} == {
        k: v for k, v in first.items() if k != "downloadUrl"
    }
    assert requests.get(listed["downloadUrl"], timeout=10).content == b"1"


def test_pagination_walks_every_file_once_while_files_are_added(client: FlaskClient) -> None:
    provider = "s3"
    existing = [upload(client, provider, f"{i}".encode(), f"f{i}.txt")["id"] for i in range(7)]
    seen: list[int] = []
    added: list[int] = []
    cursor = None
    pages = 0
    while True:
        query = f"?limit=2&cursor={cursor}" if cursor else "?limit=2"
        page = client.get(f"/{provider}/files{query}").get_json()
        pages += 1
        seen += [f["id"] for f in page["files"]]
        # A file saved mid-walk is newer than the cursor: the walk neither repeats nor skips for it.
        added.append(upload(client, provider, b"new", "new.txt")["id"])
        cursor = page["nextCursor"]
        if cursor is None:
            break
    assert pages == 4
    assert seen == sorted(existing, reverse=True)
    assert len(set(seen)) == len(seen)
    fresh = client.get(f"/{provider}/files?limit=100").get_json()["files"]
    assert [f["id"] for f in fresh] == sorted(existing + added, reverse=True)


def test_an_exact_last_page_has_no_next_cursor(client: FlaskClient) -> None:
    for i in range(4):
        upload(client, "r2", b"x", f"{i}.txt")
    first = client.get("/r2/files?limit=2").get_json()
    second = client.get(f"/r2/files?limit=2&cursor={first['nextCursor']}").get_json()
    assert len(second["files"]) == 2
    assert second["nextCursor"] is None


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("limit=0", "limit must be a whole number from 1 to 100"),
        ("limit=101", "limit must be a whole number from 1 to 100"),
        ("limit=ten", "limit must be a whole number from 1 to 100"),
        ("limit=-1", "limit must be a whole number from 1 to 100"),
        ("limit=99999999999999999999999", "limit must be a whole number from 1 to 100"),
        ("cursor=nonsense", "cursor is not valid: pass nextCursor from the previous page unchanged"),
        ("cursor=djE6LTE", "cursor is not valid: pass nextCursor from the previous page unchanged"),
        ("cursor=" + "A" * 200, "cursor is not valid: pass nextCursor from the previous page unchanged"),
        ("cursor=%F0%9F%98%80", "cursor is not valid: pass nextCursor from the previous page unchanged"),
    ],
)
def test_listing_refuses_a_bad_limit_or_cursor(client: FlaskClient, query: str, message: str) -> None:
    response = client.get(f"/s3/files?{query}")
    assert response.status_code == 400
    assert response.get_json() == {"success": False, "error": message}


def test_a_cursor_past_every_id_is_an_empty_page(client: FlaskClient) -> None:
    upload(client, "b2", b"x")
    # "v1:1" continues after id 1: nothing is older.
    response = client.get("/b2/files?cursor=djE6MQ")
    assert response.get_json()["files"] == []


@pytest.mark.parametrize("provider", PROVIDERS)
def test_another_users_file_is_404_on_every_route(
    client: FlaskClient, db: psycopg2.extensions.connection, provider: str
) -> None:
    saved = upload(client, provider, b"mine", "mine.txt", user="owner")
    file_id = saved["id"]
    expected = {"success": False, "error": f"no file {file_id} among your {provider} files"}
    for method, path in [
        ("get", f"/{provider}/files/{file_id}"),
        ("get", f"/{provider}/files/{file_id}/download"),
        ("delete", f"/{provider}/files/{file_id}"),
    ]:
        response = getattr(client, method)(path, headers=as_user("intruder"))
        assert response.status_code == 404, (method, path)
        assert response.get_json() == expected
    assert client.get(f"/{provider}/files", headers=as_user("intruder")).get_json()["files"] == []
    # Still there, for its owner.
    assert len(rows(db, provider)) == 1
    assert requests.get(saved["downloadUrl"], timeout=10).content == b"mine"


@pytest.mark.parametrize(
    ("file_id", "status", "message"),
    [
        ("12345", 404, "no file 12345 among your s3 files"),
        ("2147483648", 404, "no file 2147483648 among your s3 files"),
        ("99999999999999999999", 404, "no file 99999999999999999999 among your s3 files"),
        ("0", 404, "no file 0 among your s3 files"),
        ("abc", 400, "file id must be a positive whole number, such as 42"),
        ("-1", 400, "file id must be a positive whole number, such as 42"),
        ("1.5", 400, "file id must be a positive whole number, such as 42"),
        ("%F0%9F%98%80", 400, "file id must be a positive whole number, such as 42"),
    ],
)
@pytest.mark.parametrize("suffix", ["", "/download"])
def test_a_file_id_that_is_not_a_file_is_refused(
    client: FlaskClient, file_id: str, status: int, message: str, suffix: str
) -> None:
    response = client.get(f"/s3/files/{file_id}{suffix}")
    assert response.status_code == status
    assert response.get_json() == {"success": False, "error": message}
    deleted = client.delete(f"/s3/files/{file_id}")
    assert deleted.status_code == status
    assert deleted.get_json() == {"success": False, "error": message}


@pytest.mark.parametrize("provider", PROVIDERS)
def test_delete_removes_object_and_row_and_is_idempotent(
    app: Flask, client: FlaskClient, db: psycopg2.extensions.connection, provider: str
) -> None:
    kept = upload(client, provider, b"keep", "keep.txt")
    doomed = upload(client, provider, b"bye", "bye.txt")

    response = client.delete(f"/{provider}/files/{doomed['id']}")
    assert response.status_code == 204
    assert response.data == b""
    with app.app_context():
        storage = get_provider(provider)
        assert storage.head(doomed["objectKey"]) is None
        assert storage.head(kept["objectKey"]) is not None
    assert [r["id"] for r in rows(db, provider)] == [kept["id"]]
    assert requests.get(doomed["downloadUrl"], timeout=10).status_code == 404

    again = client.delete(f"/{provider}/files/{doomed['id']}")
    assert again.status_code == 204
    assert client.get(f"/{provider}/files/{doomed['id']}").status_code == 404
    # Deleted by its owner: still 404, not 204, for anyone else.
    other = client.delete(f"/{provider}/files/{doomed['id']}", headers=as_user("intruder"))
    assert other.status_code == 404


def test_delete_keeps_the_row_when_storage_is_down(
    make_app: Callable[..., Flask], client: FlaskClient, db: psycopg2.extensions.connection
) -> None:
    saved = upload(client, "s3", b"stay", "stay.txt")
    broken = make_app(S3_ENDPOINT_URL="http://127.0.0.1:9", STORAGE_MAX_ATTEMPTS="1")
    response = broken.test_client().delete(f"/s3/files/{saved['id']}")
    assert response.status_code == 502
    assert response.get_json() == {"success": False, "error": "s3 storage is unreachable, try again"}
    assert len(rows(db, "s3")) == 1
    assert client.delete(f"/s3/files/{saved['id']}").status_code == 204
    assert rows(db, "s3") == []


@pytest.mark.parametrize(
    ("provider", "variables"),
    [
        ("s3", {"S3_PUBLIC_READ": "on"}),
        ("r2", {"R2_PUBLIC_BASE_URL": "https://files.example.com"}),
        ("b2", {"B2_PUBLIC_READ": "on"}),
        ("azure", {"AZURE_PUBLIC_READ": "on"}),
    ],
)
def test_public_buckets_get_plain_download_urls(
    make_app: Callable[..., Flask], provider: str, variables: dict[str, str]
) -> None:
    public = make_app(**variables)
    saved = upload(public.test_client(), provider, b"public", "p.txt")
    assert saved["downloadUrl"] == saved["fileUrl"]
    assert "?" not in saved["downloadUrl"]
    if provider == "r2":
        assert saved["downloadUrl"].startswith("https://files.example.com/")


def test_download_links_live_as_long_as_configured(make_app: Callable[..., Flask]) -> None:
    app = make_app(DOWNLOAD_URL_EXPIRES_SECONDS="120")
    saved = upload(app.test_client(), "s3", b"x")
    assert "X-Amz-Expires=120&" in saved["downloadUrl"]
    azure = upload(app.test_client(), "azure", b"x")
    assert "sp=r&" in azure["downloadUrl"]


@pytest.mark.parametrize("value", ["0", "604801", "soon"])
def test_download_expiry_is_checked_at_start_up(make_app: Callable[..., Flask], value: str) -> None:
    from app.config import ConfigError

    with pytest.raises(ConfigError, match="DOWNLOAD_URL_EXPIRES_SECONDS"):
        make_app(DOWNLOAD_URL_EXPIRES_SECONDS=value)


# Active content: types browsers run (HTML, SVG, XML, JavaScript) never reach a public bucket
# or a pattern's allowance unless listed exactly, and download links never serve them inline.

PUBLIC = {
    "s3": {"S3_PUBLIC_READ": "on"},
    "r2": {"R2_PUBLIC_BASE_URL": "https://files.example.com"},
    "b2": {"B2_PUBLIC_READ": "on"},
    "azure": {"AZURE_PUBLIC_READ": "on"},
}
ON_A_PUBLIC_BUCKET = (
    "is not allowed on a public bucket, where browsers would run it; "
    "list it exactly in ALLOWED_CONTENT_TYPES to accept it"
)


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize(
    "content_type",
    [
        "text/html",
        "image/svg+xml",
        "application/xhtml+xml",
        "text/javascript",
        "text/xml",
        # Types browsers sniff for HTML, and one whose parts render.
        "application/unknown",
        "unknown/unknown",
        "*/*",
        "multipart/x-mixed-replace",
    ],
)
def test_a_public_bucket_refuses_active_types_unless_listed_exactly(
    make_app: Callable[..., Flask], provider: str, content_type: str
) -> None:
    client = make_app(**PUBLIC[provider]).test_client()
    body = {"fileName": "page.html", "contentType": content_type}
    response = client.post(f"/{provider}/presign-upload", json=body)
    assert response.status_code == 415
    assert response.get_json()["error"] == f"contentType {content_type} {ON_A_PUBLIC_BUCKET}"
    # A private bucket takes it (its links are signed, and attach it).
    assert make_app().test_client().post(f"/{provider}/presign-upload", json=body).status_code == 200


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_pattern_never_admits_svg(make_app: Callable[..., Flask], provider: str) -> None:
    client = make_app(ALLOWED_CONTENT_TYPES="image/*").test_client()
    response = client.post(
        f"/{provider}/presign-upload", json={"fileName": "a.svg", "contentType": "image/svg+xml"}
    )
    assert response.status_code == 415
    assert response.get_json()["error"] == (
        "contentType image/svg+xml is not allowed; allowed: image/* (a pattern never admits a type browsers "
        "run, such as HTML, SVG or JavaScript: list it exactly)"
    )
    ok = client.post(f"/{provider}/presign-upload", json={"fileName": "a.png", "contentType": "image/png"})
    assert ok.status_code == 200


@pytest.mark.parametrize("provider", PROVIDERS)
def test_an_active_type_listed_exactly_on_a_public_bucket_is_downloaded_as_an_attachment(
    make_app: Callable[..., Flask], provider: str
) -> None:
    app = make_app(**PUBLIC[provider], ALLOWED_CONTENT_TYPES="image/svg+xml, image/png")
    saved = upload(app.test_client(), provider, b"<svg/>", "logo.svg", "image/svg+xml")
    # Not the plain URL, which the bucket would serve inline with the stored type.
    assert saved["downloadUrl"] != saved["fileUrl"] and "?" in saved["downloadUrl"]
    if provider != "r2":  # R2's public URL is made up here; the signed link is real
        got = requests.get(saved["downloadUrl"], timeout=30)
        assert got.status_code == 200
        assert got.headers["Content-Disposition"].startswith("attachment;")
    # An inert type on the same bucket keeps its plain public URL.
    picture = upload(app.test_client(), provider, corpus.png(), "p.png", "image/png")
    assert picture["downloadUrl"] == picture["fileUrl"]


def test_an_azure_upload_replaced_by_html_on_a_public_container_is_refused_at_save(
    make_app: Callable[..., Flask], db: psycopg2.extensions.connection
) -> None:
    from tests.helpers import presign, put, save

    app = make_app(**PUBLIC["azure"])
    client = app.test_client()
    presigned = presign(client, "azure", "photo.png", "image/png", file_size=6)
    # The SAS cannot bind the type: HTML lands where anyone could open it.
    assert put(presigned, b"<html>", **{"Content-Type": "text/html"}).status_code == 201
    response = save(client, "azure", presigned["objectKey"])
    assert response.status_code == 415
    assert response.get_json()["error"] == (
        f"the uploaded file's content type text/html {ON_A_PUBLIC_BUCKET}; it was deleted"
    )
    with app.app_context():
        assert get_provider("azure").head(presigned["objectKey"]) is None
    assert rows(db, "azure") == []


@pytest.mark.parametrize("provider", ["s3", "r2", "b2"])
def test_a_public_bucket_never_signs_an_upload_of_unbound_type(
    make_app: Callable[..., Flask], provider: str
) -> None:
    client = make_app(**PUBLIC[provider]).test_client()
    response = client.post(f"/{provider}/s3/sign", json={"method": "PUT", "key": "a.png"})
    assert response.status_code == 400
    assert response.get_json()["error"] == (
        f"contentType is required: the {provider} bucket is public, so an upload's type must be signed"
    )
    typed = client.post(
        f"/{provider}/s3/sign", json={"method": "PUT", "key": "a.png", "contentType": "image/png"}
    )
    assert typed.status_code == 200


def test_a_saved_file_replaced_through_its_sas_is_downloaded_with_the_type_recorded(
    client: FlaskClient,
) -> None:
    from tests.helpers import presign, put, save

    presigned = presign(client, "azure", "photo.png", "image/png", file_size=len(corpus.png()))
    assert put(presigned, corpus.png()).status_code == 201
    saved = save(client, "azure", presigned["objectKey"]).get_json()["file"]
    # The SAS is replayed with an HTML page: it only reaches the staging blob (the saved one
    # was promoted out of its reach), and the link serves what was checked, as a PNG.
    assert put(presigned, b"<script>alert(1)</script>", **{"Content-Type": "text/html"}).status_code == 201
    got = requests.get(saved["downloadUrl"], timeout=30)
    assert got.headers["Content-Type"] == "image/png"
    assert got.content == corpus.png()


@pytest.mark.parametrize("provider", ["s3", "r2", "b2"])
def test_a_file_of_unbound_type_replaced_after_its_save_is_downloaded_with_the_type_recorded(
    client: FlaskClient, provider: str
) -> None:
    from tests.helpers import save

    answer = client.post(f"/{provider}/s3/sign", json={"method": "PUT", "key": "photo.png"}).get_json()
    png = {"Content-Type": "image/png"}
    assert requests.put(answer["url"], data=corpus.png(), headers=png, timeout=30).ok
    saved = save(client, provider, answer["key"]).get_json()["file"]
    replaced = requests.put(
        answer["url"], data=b"<script>", headers={"Content-Type": "text/html"}, timeout=30
    )
    assert replaced.ok  # the URL does not bind the type (see issue 15 for making saved objects final)
    got = requests.get(saved["downloadUrl"], timeout=30)
    assert got.headers["Content-Type"] == "image/png"
    assert got.headers["Content-Disposition"].startswith("inline;")

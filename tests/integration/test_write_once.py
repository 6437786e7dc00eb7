"""Write-once uploads: once an object exists, the service's own upload URLs cannot replace it.

The service signs ``If-None-Match: *`` into the PUTs of its own routes
(``/P/presign-upload``, Companion's ``/P/s3/params``) where the provider is
write-once (S3 and R2 by default, B2 when ``B2_WRITE_ONCE=on``); SeaweedFS
enforces it as S3 and R2 do. The guides' routes keep the guides' PUT.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient

from app.components import get_database, get_provider
from app.repository import FileRepository
from tests.helpers import presign, put, rows, save

pytestmark = pytest.mark.integration

ORIGINAL = b"checked bytes"
REPLACEMENT = b"evil! payload"  # the same length: the signed Content-Length still matches


def uploaded_and_saved(client: FlaskClient, provider: str) -> dict[str, Any]:
    presigned = presign(client, provider, "notes.txt", "text/plain", file_size=len(ORIGINAL))
    assert put(presigned, ORIGINAL).status_code == 200
    response = save(client, provider, presigned["objectKey"])
    assert response.status_code == 201, response.get_json()
    return presigned


@pytest.mark.parametrize("provider", ["s3", "r2"])
def test_a_replayed_upload_url_cannot_replace_a_saved_object(
    app: Flask, client: FlaskClient, db: Any, provider: str
) -> None:
    presigned = uploaded_and_saved(client, provider)
    assert presigned["headers"]["If-None-Match"] == "*"
    replay = put(presigned, REPLACEMENT)
    assert replay.status_code == 412, replay.text
    assert "PreconditionFailed" in replay.text
    [row] = rows(db, provider)
    with app.app_context():
        stored = get_provider(provider).head(presigned["objectKey"])
    assert stored is not None and (stored.size, stored.etag) == (row["size_bytes"], row["etag"])
    file_id = row["id"]
    download = client.get(f"/{provider}/files/{file_id}").get_json()["file"]["downloadUrl"]
    assert requests.get(download, timeout=10).content == ORIGINAL


@pytest.mark.parametrize("provider", ["s3", "r2"])
def test_a_put_that_leaves_the_condition_out_does_not_match_the_signature(
    client: FlaskClient, provider: str
) -> None:
    presigned = presign(client, provider, "notes.txt", "text/plain", file_size=len(ORIGINAL))
    headers = {k: v for k, v in presigned["headers"].items() if k != "If-None-Match"}
    response = requests.put(presigned["presignedUrl"], data=ORIGINAL, headers=headers, timeout=10)
    assert response.status_code == 403, response.text
    assert "SignatureDoesNotMatch" in response.text


def test_a_companion_style_put_is_write_once_too(client: FlaskClient) -> None:
    params = client.get("/r2/s3/params?filename=a.txt&type=text/plain").get_json()
    assert params["method"] == "PUT" and params["headers"]["If-None-Match"] == "*"
    first = requests.put(params["url"], data=ORIGINAL, headers=params["headers"], timeout=10)
    assert first.status_code == 200, first.text
    assert save(client, "r2", params["key"]).status_code == 201
    again = requests.put(params["url"], data=REPLACEMENT, headers=params["headers"], timeout=10)
    assert again.status_code == 412


def test_b2_is_write_once_only_when_switched_on(make_app: Callable[..., Flask]) -> None:
    # Off (the default): the URL still replaces the object until it expires; the row keeps what was checked.
    default = uploaded_and_saved(make_app().test_client(), "b2")
    assert "If-None-Match" not in default["headers"]
    assert put(default, REPLACEMENT).status_code == 200
    client = make_app(B2_WRITE_ONCE="on").test_client()
    presigned = uploaded_and_saved(client, "b2")
    assert put(presigned, REPLACEMENT).status_code == 412


@pytest.mark.parametrize(("path", "provider"), [("/presign-upload", "s3"), ("/presign-b2-upload", "b2")])
def test_the_guides_routes_keep_the_guides_put(client: FlaskClient, path: str, provider: str) -> None:
    response = client.post(path, json={"fileName": "test-s3.txt", "contentType": "text/plain"})
    assert response.status_code == 200
    body = response.get_json()
    assert body["provider"] == provider and body["headers"] == {"Content-Type": "text/plain"}
    # The guide's own PUT: only Content-Type.
    first = requests.put(body["presignedUrl"], data=b"x", headers={"Content-Type": "text/plain"}, timeout=10)
    assert first.status_code == 200, first.text


# Uploads in parts: once a key is saved, nothing more is signed for it.

SAVED_KEY = "key was saved already: its upload is final and nothing more is signed for it"


def sign(client: FlaskClient, provider: str, **request: Any) -> Any:
    return client.post(f"/{provider}/s3/sign", json=request)


def upload_id_of(answer: requests.Response) -> str:
    assert answer.status_code == 200, answer.text
    return answer.text.split("<UploadId>", 1)[1].split("</UploadId>", 1)[0]


def parts_xml(parts: list[tuple[int, str]]) -> str:
    items = "".join(f"<Part><PartNumber>{n}</PartNumber><ETag>{e}</ETag></Part>" for n, e in parts)
    return f"<CompleteMultipartUpload>{items}</CompleteMultipartUpload>"


@pytest.mark.parametrize("provider", ["s3", "r2", "b2"])
def test_a_saved_key_gets_no_more_part_list_or_complete_signatures(
    app: Flask, client: FlaskClient, provider: str
) -> None:
    created = sign(
        client, provider, method="POST", key="a.bin", contentType="application/octet-stream"
    ).get_json()
    key = created["key"]
    create = lambda: requests.post(created["url"], headers=created["headers"], timeout=30)  # noqa: E731
    upload_id = upload_id_of(create())
    part = sign(client, provider, method="PUT", key=key, uploadId=upload_id, partNumber=1).get_json()["url"]
    etag = requests.put(part, data=ORIGINAL, timeout=30).headers["ETag"]
    done = sign(client, provider, method="POST", key=key, uploadId=upload_id).get_json()["url"]
    assert requests.post(done, data=parts_xml([(1, etag)]), timeout=30).status_code == 200
    assert save(client, provider, key).status_code == 201

    # The signed create can still be replayed at the storage until it expires ...
    second = upload_id_of(create())
    # ... but nothing that would make that second upload the object is signed any more.
    for step in (
        {"method": "PUT", "partNumber": 1},
        {"method": "GET"},
        {"method": "POST"},
    ):
        refused = sign(client, provider, key=key, uploadId=second, **step)
        assert refused.status_code == 409, refused.get_json()
        assert refused.get_json()["error"].startswith(SAVED_KEY)
    # Aborting only drops parts: still signed, and it cleans up the replayed upload.
    abort = sign(client, provider, method="DELETE", key=key, uploadId=second)
    assert abort.status_code == 200
    assert requests.delete(abort.get_json()["url"], timeout=30).status_code == 204
    with app.app_context():
        stored = get_provider(provider).head(key)
    assert stored is not None and stored.size == len(ORIGINAL)


def test_companion_routes_refuse_to_go_on_with_a_saved_key(client: FlaskClient) -> None:
    created = client.post("/r2/s3/multipart", json={"filename": "a.bin", "type": "application/octet-stream"})
    key, upload_id = created.get_json()["key"], created.get_json()["uploadId"]
    url = client.get(f"/r2/s3/multipart/{upload_id}/1", query_string={"key": key}).get_json()["url"]
    etag = requests.put(url, data=ORIGINAL, timeout=30).headers["ETag"]
    body = {"parts": [{"PartNumber": 1, "ETag": etag}]}
    completed = client.post(f"/r2/s3/multipart/{upload_id}/complete", query_string={"key": key}, json=body)
    assert completed.status_code == 200, completed.get_json()
    saved = save(client, "r2", key)
    assert saved.status_code == 201
    # Deleting the file ends it for good: its key is not reopened for another upload.
    assert client.delete(f"/r2/files/{saved.get_json()['file']['id']}").status_code == 204

    for response in (
        client.get(f"/r2/s3/multipart/{upload_id}/1", query_string={"key": key}),
        client.get(f"/r2/s3/multipart/{upload_id}/batch", query_string={"key": key, "partNumbers": "1"}),
        client.get(f"/r2/s3/multipart/{upload_id}", query_string={"key": key}),
        client.post(f"/r2/s3/multipart/{upload_id}/complete", query_string={"key": key}, json=body),
    ):
        assert response.status_code == 409, response.get_json()
        assert response.get_json()["error"].startswith(SAVED_KEY)


def test_a_cleaned_up_key_gets_no_more_signatures(app: Flask, client: FlaskClient) -> None:
    created = client.post("/s3/s3/multipart", json={"filename": "a.bin", "type": "application/octet-stream"})
    key, upload_id = created.get_json()["key"], created.get_json()["uploadId"]
    # As a refused save (or a sweep) claims it before deleting its object.
    assert FileRepository(get_database(app).run).claim_refused("s3", key, "user_123")
    refused = client.get(f"/s3/s3/multipart/{upload_id}/1", query_string={"key": key})
    assert refused.status_code == 410
    assert refused.get_json()["error"] == (
        "key's upload was cleaned up (abandoned, or refused at save); presign the file again"
    )


# Azure: the guide's route signs create only, which its single PUT needs and nothing more.


def test_the_azure_guides_sas_creates_the_blob_once_and_can_do_nothing_else(
    app: Flask, client: FlaskClient
) -> None:
    from azure.core.exceptions import HttpResponseError
    from azure.storage.blob import BlobClient, ContentSettings

    body = client.post(
        "/generate-upload-sas", json={"fileName": "a.png", "contentType": "image/png"}
    ).get_json()
    assert "sp=c&" in body["sasUrl"]
    # The guide's PUT, exactly.
    guide_put = {"Content-Type": "image/png", "x-ms-blob-type": "BlockBlob"}
    assert requests.put(body["sasUrl"], data=ORIGINAL, headers=guide_put, timeout=10).status_code == 201
    assert client.post("/save-metadata", json={"blobName": body["blobName"]}).status_code == 201

    replay = requests.put(body["sasUrl"], data=REPLACEMENT, headers=guide_put, timeout=10)
    assert replay.status_code == 403, replay.text
    blob = BlobClient.from_blob_url(body["sasUrl"])
    with pytest.raises(HttpResponseError) as lease:
        blob.acquire_lease(lease_duration=-1)
    assert lease.value.status_code == 403
    with pytest.raises(HttpResponseError) as retype:
        blob.set_http_headers(ContentSettings(content_type="image/svg+xml"))
    assert retype.value.status_code == 403
    with pytest.raises(HttpResponseError) as block:
        blob.stage_block("MDAwMDAw", b"more")
    assert block.value.status_code == 403
    with app.app_context():
        stored = get_provider("azure").head(body["blobName"])
    assert stored is not None and (stored.size, stored.content_type) == (len(ORIGINAL), "image/png")


def test_the_services_own_azure_sas_still_takes_blocks(app: Flask, client: FlaskClient) -> None:
    from azure.storage.blob import BlobClient

    presigned = presign(client, "azure", "big.bin", "application/octet-stream", file_size=len(ORIGINAL))
    assert "sp=cw&" in presigned["sasUrl"]
    # Proven at the storage, not by the URL's text: a block and its list go through.
    blob = BlobClient.from_blob_url(presigned["sasUrl"])
    blob.stage_block("MDAwMDAw", ORIGINAL)
    blob.commit_block_list(["MDAwMDAw"])
    with app.app_context():
        stored = get_provider("azure").head(presigned["objectKey"])
    assert stored is not None and stored.size == len(ORIGINAL)


@pytest.mark.parametrize("provider", ["s3", "r2"])
def test_a_companion_complete_never_replaces_an_object_already_there(
    app: Flask, client: FlaskClient, provider: str
) -> None:
    def upload_part_of(upload_id: str, data: bytes) -> dict[str, Any]:
        url = client.get(f"/{provider}/s3/multipart/{upload_id}/1", query_string={"key": key}).get_json()[
            "url"
        ]
        return {
            "parts": [{"PartNumber": 1, "ETag": requests.put(url, data=data, timeout=30).headers["ETag"]}]
        }

    created = client.post(
        f"/{provider}/s3/multipart", json={"filename": "a.bin", "type": "application/octet-stream"}
    )
    key, first = created.get_json()["key"], created.get_json()["uploadId"]
    done = client.post(
        f"/{provider}/s3/multipart/{first}/complete",
        query_string={"key": key},
        json=upload_part_of(first, ORIGINAL),
    )
    assert done.status_code == 200, done.get_json()
    # A second upload on the same key (as a replayed create URL makes), finished before the save:
    # the service's own checks pass, and the storage's condition is what refuses it.
    with app.app_context():
        second = get_provider(provider).create_multipart(key, "application/octet-stream")  # type: ignore[attr-defined]
    refused = client.post(
        f"/{provider}/s3/multipart/{second}/complete",
        query_string={"key": key},
        json=upload_part_of(second, REPLACEMENT),
    )
    assert refused.status_code == 409, refused.get_json()
    assert refused.get_json()["error"] == (
        "an object is already stored under key: its upload was completed; call save-metadata"
    )
    saved = save(client, provider, key)
    assert saved.status_code == 201 and saved.get_json()["file"]["size"] == len(ORIGINAL)


def test_an_azure_upload_declared_as_one_put_gets_a_create_only_sas(client: FlaskClient) -> None:
    from azure.core.exceptions import HttpResponseError
    from azure.storage.blob import BlobClient

    body = {"fileName": "a.txt", "contentType": "text/plain", "fileSize": len(ORIGINAL), "singlePut": True}
    presigned = client.post("/azure/presign-upload", json=body).get_json()
    assert "sp=c&" in presigned["sasUrl"]
    assert put(presigned, ORIGINAL).status_code == 201
    assert save(client, "azure", presigned["objectKey"]).status_code == 201
    assert put(presigned, REPLACEMENT).status_code == 403
    with pytest.raises(HttpResponseError) as lease:
        BlobClient.from_blob_url(presigned["sasUrl"]).acquire_lease(lease_duration=-1)
    assert lease.value.status_code == 403


def test_one_put_is_held_to_what_one_put_blob_takes(make_app: Callable[..., Flask]) -> None:
    client = make_app(MAX_UPLOAD_BYTES=str(10 * 1024**3)).test_client()
    too_big = 5000 * 1024**2 + 1
    body = {"fileName": "a.bin", "contentType": "application/octet-stream", "fileSize": too_big}
    assert client.post("/azure/presign-upload", json=body).status_code == 200
    refused = client.post("/azure/presign-upload", json={**body, "singlePut": True})
    assert refused.status_code == 413
    assert refused.get_json()["error"] == f"fileSize {too_big} is over the {5000 * 1024**2} byte upload limit"

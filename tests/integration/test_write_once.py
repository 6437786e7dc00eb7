"""Write-once uploads: once an object exists, the service's own upload URLs cannot replace it.

The service signs ``If-None-Match: *`` into the PUTs of its own routes
(``/P/presign-upload``, Companion's ``/P/s3/params``) where the provider is
write-once (S3 and R2 by default, B2 when ``B2_WRITE_ONCE=on``); SeaweedFS
enforces it as S3 and R2 do. The guides' routes keep the guides' PUT.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient

from app import components
from app.components import get_database, get_provider
from app.repository import FileRepository
from tests import corpus
from tests.helpers import SERVICE_ORIGIN, StepAnswer, presign, put, rows, save, send_to, staged

pytestmark = pytest.mark.integration

ORIGINAL = b"checked bytes"
REPLACEMENT = b"evil! payload"  # the same length: the signed Content-Length still matches
PNG = corpus.png()  # what save-metadata takes for image/png: a real one


def uploaded_and_saved(client: FlaskClient, provider: str) -> dict[str, Any]:
    presigned = presign(client, provider, "notes.txt", "text/plain", file_size=len(ORIGINAL))
    assert put(presigned, ORIGINAL).status_code in (200, 201)  # S3's 200, Azure's 201
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


def upload_id_of(answer: requests.Response | StepAnswer) -> str:
    assert answer.status_code == 200, answer.text
    return answer.text.split("<UploadId>", 1)[1].split("</UploadId>", 1)[0]


def parts_xml(parts: list[tuple[int, str]]) -> str:
    items = "".join(f"<Part><PartNumber>{n}</PartNumber><ETag>{e}</ETag></Part>" for n, e in parts)
    return f"<CompleteMultipartUpload>{items}</CompleteMultipartUpload>"


@pytest.mark.parametrize("provider", ["s3", "r2", "b2"])
def test_in_sign_mode_the_service_creates_and_completes_so_no_replay_makes_a_second_upload(
    app: Flask, client: FlaskClient, provider: str
) -> None:
    created = sign(
        client, provider, method="POST", key="a.bin", contentType="application/octet-stream"
    ).get_json()
    key = created["key"]
    # The create URL is the service's own: the upload was started when it was signed ...
    assert created["url"].startswith(f"{SERVICE_ORIGIN}/{provider}/s3/sign/create?")
    upload_id = upload_id_of(send_to(client, "POST", created["url"]))
    # ... and replaying it answers the same upload: no second one under the key.
    assert upload_id_of(send_to(client, "POST", created["url"])) == upload_id == created["uploadId"]
    with app.app_context():
        started = [u.upload_id for u in get_provider(provider).list_multipart_uploads() if u.key == key]
    assert started == [upload_id]

    part = sign(client, provider, method="PUT", key=key, uploadId=upload_id, partNumber=1).get_json()["url"]
    etag = requests.put(part, data=ORIGINAL, timeout=30).headers["ETag"]
    done = sign(client, provider, method="POST", key=key, uploadId=upload_id).get_json()["url"]
    assert done.startswith(f"{SERVICE_ORIGIN}/{provider}/s3/sign/complete?")
    assert send_to(client, "POST", done, data=parts_xml([(1, etag)])).status_code == 200
    assert save(client, provider, key).status_code == 201

    # The complete URL replayed after the save, and every step asked for again, are refused.
    replayed = send_to(client, "POST", done, data=parts_xml([(1, etag)]))
    assert replayed.status_code == 409 and SAVED_KEY in replayed.text
    for step in ({"method": "PUT", "partNumber": 1}, {"method": "GET"}, {"method": "POST"}):
        refused = sign(client, provider, key=key, uploadId=upload_id, **step)
        assert refused.status_code == 409, refused.get_json()
        assert refused.get_json()["error"].startswith(SAVED_KEY)
    # Aborting only drops parts: still signed, and harmless on a completed upload.
    assert sign(client, provider, method="DELETE", key=key, uploadId=upload_id).status_code == 200
    with app.app_context():
        stored = get_provider(provider).head(key)
    assert stored is not None and stored.size == len(ORIGINAL)


NO_SIGNATURE = "signature is required: send the step to the URL the sign route answered, as it is"
BAD_STEP = "signature is not this service's: send the URL the sign route answered, as it is"


@pytest.mark.parametrize(
    ("change", "status", "message"),
    [
        ({"signature": "0" * 32}, 403, BAD_STEP),
        ({"signature": "not-hex"}, 403, BAD_STEP),
        ({"signature": None}, 403, NO_SIGNATURE),
        ({"user": "mallory"}, 403, BAD_STEP),
        ({"uploadId": "another-upload"}, 403, BAD_STEP),
        ({"key": "0" * 40 + "-a.bin"}, 403, BAD_STEP),
        ({"expires": "1"}, 403, BAD_STEP),
        ({"expires": "soon"}, 400, "expires must be the Unix time the sign route put in the URL"),
        ({"user": None}, 400, "user is required"),
    ],
)  # fmt: skip
def test_a_step_url_changed_in_any_field_is_refused(
    client: FlaskClient, change: dict[str, str | None], status: int, message: str
) -> None:
    created = sign(client, "s3", method="POST", key="a.bin").get_json()
    path, _, raw = created["url"][len(SERVICE_ORIGIN) :].partition("?")
    query: dict[str, str | None] = dict(parse_qsl(raw))
    query.update(change)
    response = client.post(path, query_string={k: v for k, v in query.items() if v is not None})
    assert (response.status_code, response.get_json()["error"]) == (status, message)
    unknown = client.post(path.replace("/create", "/merge"), query_string=raw)
    assert (unknown.status_code, unknown.get_json()["error"]) == (
        404,
        "the service answers the steps create and complete only, not 'merge'",
    )


def test_a_step_url_past_its_expiry_is_refused(app: Flask, client: FlaskClient) -> None:
    created = sign(client, "s3", method="POST", key="a.bin").get_json()
    query = dict(parse_qsl(created["url"].partition("?")[2]))
    # A URL the service itself signed, one second in the past.
    past = int(time.time()) - 1
    with app.app_context():
        signer = components.uploads().key_signer()
        signature = signer.step_signature(
            "create", "s3", query["user"], query["key"], query["uploadId"], past
        )
    query.update(expires=str(past), signature=signature)
    response = client.post("/s3/s3/sign/create", query_string=query)
    assert response.status_code == 403
    assert (
        response.get_json()["error"] == "this create URL has expired; ask the sign route for the step again"
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"not xml", "the body must be S3's CompleteMultipartUpload XML, without a DTD or entities"),
        (b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><CompleteMultipartUpload/>',
         "the body must be S3's CompleteMultipartUpload XML, without a DTD or entities"),
        (b'<?xml version="1.0" encoding="bogus"?><CompleteMultipartUpload/>',
         "the body must be S3's CompleteMultipartUpload XML, without a DTD or entities"),
        (b'<?xml version="1.0" encoding="utf-32"?><CompleteMultipartUpload/>',
         "the body must be S3's CompleteMultipartUpload XML, without a DTD or entities"),
        (b"<Delete><Object/></Delete>", "the body must be a CompleteMultipartUpload document, not Delete"),
        (b"<CompleteMultipartUpload></CompleteMultipartUpload>",
         "parts is required: a list of {PartNumber, ETag}, one per uploaded part"),
        (b"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber></Part></CompleteMultipartUpload>",
         "part 1 needs its ETag, as the PUT of the part answered it"),
        (b"<CompleteMultipartUpload><Part><PartNumber>0</PartNumber><ETag>e</ETag></Part>"
         b"</CompleteMultipartUpload>", "partNumber must be a whole number from 1 to 10000"),
    ],
)  # fmt: skip
def test_the_service_complete_refuses_a_body_that_is_not_s3s_part_list(
    client: FlaskClient, body: bytes, message: str
) -> None:
    created = sign(client, "s3", method="POST", key="a.bin").get_json()
    done = sign(client, "s3", method="POST", key=created["key"], uploadId=created["uploadId"]).get_json()[
        "url"
    ]
    response = send_to(client, "POST", done, data=body, headers={"Content-Type": "application/xml"})
    assert response.status_code == 400
    assert json.loads(response.text)["error"] == message


def test_the_service_complete_over_the_limit_aborts_the_upload(make_app: Callable[..., Flask]) -> None:
    app = make_app(MAX_UPLOAD_BYTES="10")
    client = app.test_client()
    created = sign(client, "s3", method="POST", key="a.bin").get_json()
    key, upload_id = created["key"], created["uploadId"]
    part = sign(client, "s3", method="PUT", key=key, uploadId=upload_id, partNumber=1).get_json()["url"]
    etag = requests.put(part, data=b"x" * 11, timeout=30).headers["ETag"]
    done = sign(client, "s3", method="POST", key=key, uploadId=upload_id).get_json()["url"]
    response = send_to(client, "POST", done, data=parts_xml([(1, etag)]))
    assert response.status_code == 413
    assert json.loads(response.text)["error"] == (
        "the parts add up to 11 bytes, over the 10 byte upload limit; the upload was aborted"
    )
    with app.app_context():
        provider = get_provider("s3")
        assert provider.head(key) is None
        assert not [u for u in provider.list_multipart_uploads() if u.key == key]


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
    assert requests.put(body["sasUrl"], data=PNG, headers=guide_put, timeout=10).status_code == 201
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
    assert stored is not None and (stored.size, stored.content_type) == (len(PNG), "image/png")


def upload_in_blocks(sas_url: str, data: bytes, content_type: str) -> None:
    from azure.storage.blob import BlobClient, ContentSettings

    blob = BlobClient.from_blob_url(sas_url)
    blob.stage_block("MDAwMDAw", data)
    blob.commit_block_list(["MDAwMDAw"], content_settings=ContentSettings(content_type=content_type))


def test_an_azure_upload_in_blocks_is_promoted_at_save_where_its_sas_cannot_reach(
    app: Flask, client: FlaskClient, db: Any
) -> None:
    from azure.core.exceptions import HttpResponseError
    from azure.storage.blob import BlobClient, ContentSettings

    presigned = presign(client, "azure", "a.png", "image/png", file_size=len(PNG))
    key = presigned["objectKey"]
    # Blocks need "w", which would also allow a second Put Blob, properties and a lease: the SAS
    # is for a staging blob, never for the key. Proven at the storage: the blocks go through.
    assert "sp=cw&" in presigned["sasUrl"] and f"/.staging/{key}?" in presigned["sasUrl"]
    upload_in_blocks(presigned["sasUrl"], PNG, "image/png")
    with app.app_context():
        storage = get_provider("azure")
        assert storage.head(key) is None and storage.head_staged(key) is not None
        saved = save(client, "azure", key)
        assert saved.status_code == 201, saved.get_json()
        # Promoted: the key holds what was checked, and the staging blob is gone.
        stored = storage.head(key)
        assert stored is not None and (stored.size, stored.content_type) == (len(PNG), "image/png")
        assert storage.head_staged(key) is None
    [row] = rows(db, "azure")
    assert (row["size_bytes"], row["etag"]) == (stored.size, stored.etag)

    # Every use of the SAS after the save: at most a new staging blob, never the saved one.
    guide_put = {"Content-Type": "text/html", "x-ms-blob-type": "BlockBlob"}
    assert requests.put(presigned["sasUrl"], data=REPLACEMENT, headers=guide_put, timeout=10).ok
    sas = presigned["sasUrl"].split("?", 1)[1]
    on_the_key = BlobClient.from_blob_url(f"{presigned['fileUrl']}?{sas}")
    for attempt in (
        lambda: on_the_key.upload_blob(REPLACEMENT, overwrite=True),
        lambda: on_the_key.acquire_lease(lease_duration=-1),
        lambda: on_the_key.set_http_headers(ContentSettings(content_type="image/svg+xml")),
        lambda: on_the_key.stage_block("MDAwMDAw", REPLACEMENT),
    ):
        with pytest.raises(HttpResponseError) as refused:
            attempt()
        assert refused.value.status_code == 403
    again = save(client, "azure", key)
    assert again.status_code == 200 and again.get_json()["file"]["size"] == len(PNG)
    download = client.get(f"/azure/files/{row['id']}").get_json()["file"]["downloadUrl"]
    assert requests.get(download, timeout=10).content == PNG


def test_a_staged_blob_written_again_after_its_check_is_not_promoted(app: Flask, client: FlaskClient) -> None:
    from app.storage.base import ObjectChanged

    presigned = presign(client, "azure", "a.bin", "application/octet-stream")
    upload_in_blocks(presigned["sasUrl"], ORIGINAL, "application/octet-stream")
    key = presigned["objectKey"]
    with app.app_context():
        storage = get_provider("azure")
        checked = storage.head_staged(key)
        assert checked is not None
        upload_in_blocks(presigned["sasUrl"], REPLACEMENT + b" and more", "application/octet-stream")
        with pytest.raises(ObjectChanged):
            storage.promote(key, checked)
        assert storage.head(key) is None


@pytest.mark.parametrize("then", ["save", "delete"])
def test_a_lease_taken_through_the_block_sas_cannot_keep_the_staging_blob(
    app: Flask, client: FlaskClient, then: str
) -> None:
    from azure.storage.blob import BlobClient

    presigned = presign(client, "azure", "a.bin", "application/octet-stream")
    key = presigned["objectKey"]
    upload_in_blocks(presigned["sasUrl"], ORIGINAL, "application/octet-stream")
    # "w" allows Lease Blob: an infinite lease on the staging blob, through the SAS.
    BlobClient.from_blob_url(presigned["sasUrl"]).acquire_lease(lease_duration=-1)
    with app.app_context():
        storage = get_provider("azure")
        if then == "save":
            assert save(client, "azure", key).status_code == 201
            assert storage.head(key) is not None
        else:  # as the sweep, a refused save or reconcile --fix delete it
            storage.delete(key)
        assert storage.head_staged(key) is None


def test_an_azure_upload_in_blocks_refused_at_save_is_deleted_from_staging(
    make_app: Callable[..., Flask],
) -> None:
    app = make_app(ALLOWED_CONTENT_TYPES="image/*")
    client = app.test_client()
    presigned = presign(client, "azure", "a.png", "image/png")
    upload_in_blocks(presigned["sasUrl"], b"<script>alert(1)</script>", "text/html")
    refused = save(client, "azure", presigned["objectKey"])
    assert refused.status_code == 415, refused.get_json()
    with app.app_context():
        storage = get_provider("azure")
        assert storage.head(presigned["objectKey"]) is None
        assert storage.head_staged(presigned["objectKey"]) is None


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


@pytest.mark.parametrize("provider", ["s3", "azure"])
def test_a_deleted_file_is_not_saved_again_from_a_replayed_url(
    app: Flask, client: FlaskClient, db: Any, provider: str
) -> None:
    presigned = uploaded_and_saved(client, provider)
    key = presigned["objectKey"]
    [row] = rows(db, provider)
    assert client.delete(f"/{provider}/files/{row['id']}").status_code == 204
    # The object is gone, so even a create-only URL (or a block SAS) can upload again ...
    assert put(presigned, REPLACEMENT).status_code in (200, 201)
    # ... but the key's upload is over: nothing is recorded, and what landed is deleted.
    again = save(client, provider, key)
    assert again.status_code == 410
    assert again.get_json()["error"] == (
        "objectKey was saved once and its file deleted since; presign the file again"
    )
    assert rows(db, provider) == []
    with app.app_context():
        storage = get_provider(provider)
        assert storage.head(key) is None and staged(storage, key) is None

"""Uploads in parts against SeaweedFS: the sign route (Uppy 6 signRequest) and the Companion-style routes."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from typing import Any
from xml.etree import ElementTree

import psycopg2.extensions
import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient

from app.components import get_provider
from tests.helpers import S3_FAMILY, save, send_to

pytestmark = pytest.mark.integration

MiB = 1024**2
# 21 MiB: four 5 MiB parts and a last one of 1 MiB.
DATA = os.urandom(21 * MiB)
PARTS = [DATA[i : i + 5 * MiB] for i in range(0, len(DATA), 5 * MiB)]


def as_user(user: str) -> dict[str, str]:
    return {"X-User-Id": user}


def sign(client: FlaskClient, provider: str, user: str = "user_123", **request: Any) -> Any:
    return client.post(f"/{provider}/s3/sign", json=request, headers=as_user(user))


def signed(client: FlaskClient, provider: str, **request: Any) -> dict[str, Any]:
    response = sign(client, provider, **request)
    assert response.status_code == 200, response.get_json()
    body: dict[str, Any] = response.get_json()
    return body


def put_part(url: str, data: bytes) -> str:
    response = requests.put(url, data=data, timeout=60)
    assert response.status_code == 200, response.text
    return response.headers["ETag"].strip('"')


def complete_xml(parts: list[tuple[int, str]]) -> str:
    items = "".join(f'<Part><PartNumber>{n}</PartNumber><ETag>"{e}"</ETag></Part>' for n, e in parts)
    return f"<CompleteMultipartUpload>{items}</CompleteMultipartUpload>"


def xml_text(document: str, tag: str) -> list[str]:
    root = ElementTree.fromstring(document)  # noqa: S314 - the test's own emulator's answer
    return [el.text or "" for el in root.iter() if el.tag.rsplit("}", 1)[-1] == tag]


def downloaded(client: FlaskClient, provider: str, file_id: int) -> bytes:
    url = client.get(f"/{provider}/files/{file_id}").get_json()["file"]["downloadUrl"]
    return requests.get(url, timeout=60).content


@pytest.mark.parametrize("provider", S3_FAMILY)
def test_sign_route_uploads_in_parts_with_a_retry_and_a_resume(client: FlaskClient, provider: str) -> None:
    created = signed(
        client, provider, method="POST", key="big.bin", contentType="application/octet-stream",
        fileSize=len(DATA),
    )  # fmt: skip
    key = created["key"]
    assert key.endswith("-big.bin") and key != "big.bin"  # the service picks the key
    assert created["partSize"] == 5 * MiB
    answer = send_to(client, "POST", created["url"], headers=created["headers"])
    assert answer.status_code == 200, answer.text
    [upload_id] = xml_text(answer.text, "UploadId")
    assert upload_id == created["uploadId"]

    etags: dict[int, str] = {}
    for number in (1, 2):
        url = signed(client, provider, method="PUT", key=key, uploadId=upload_id, partNumber=number)["url"]
        etags[number] = put_part(url, PARTS[number - 1])
    # Part 2 again, as after a network failure: the part is simply replaced.
    url = signed(client, provider, method="PUT", key=key, uploadId=upload_id, partNumber=2)["url"]
    assert put_part(url, PARTS[1]) == etags[2]

    # A reload: the page asks which parts are there and carries on from them.
    listed = requests.get(
        signed(client, provider, method="GET", key=key, uploadId=upload_id)["url"], timeout=30
    )
    assert listed.status_code == 200, listed.text
    # (SeaweedFS lists a part uploaded twice twice; S3 lists it once.)
    assert sorted(set(xml_text(listed.text, "PartNumber"))) == ["1", "2"]
    for number in range(3, len(PARTS) + 1):
        url = signed(client, provider, method="PUT", key=key, uploadId=upload_id, partNumber=number)["url"]
        etags[number] = put_part(url, PARTS[number - 1])

    url = signed(client, provider, method="POST", key=key, uploadId=upload_id)["url"]
    done = send_to(client, "POST", url, data=complete_xml(sorted(etags.items())))
    assert done.status_code == 200, done.text

    saved = save(client, provider, key)
    assert saved.status_code == 201, saved.get_json()
    file = saved.get_json()["file"]
    assert file["size"] == len(DATA)
    assert file["contentType"] == "application/octet-stream"
    assert hashlib.sha256(downloaded(client, provider, file["id"])).digest() == hashlib.sha256(DATA).digest()


@pytest.mark.parametrize("provider", S3_FAMILY)
def test_companion_routes_upload_in_parts(client: FlaskClient, provider: str) -> None:
    created = client.post(
        f"/{provider}/s3/multipart", json={"filename": "video.mp4", "type": "video/mp4", "metadata": {}}
    )
    assert created.status_code == 200, created.get_json()
    key, upload_id = created.get_json()["key"], created.get_json()["uploadId"]
    assert key.endswith("-video.mp4")

    batch = client.get(
        f"/{provider}/s3/multipart/{upload_id}/batch", query_string={"key": key, "partNumbers": "1,2,3"}
    )
    assert batch.status_code == 200, batch.get_json()
    urls = batch.get_json()["presignedUrls"]
    etags = {int(n): put_part(url, PARTS[int(n) - 1]) for n, url in urls.items()}
    for number in range(4, len(PARTS) + 1):
        one = client.get(f"/{provider}/s3/multipart/{upload_id}/{number}", query_string={"key": key})
        assert one.status_code == 200
        assert one.get_json()["expires"] == 300
        etags[number] = put_part(one.get_json()["url"], PARTS[number - 1])

    listed = client.get(f"/{provider}/s3/multipart/{upload_id}", query_string={"key": key}).get_json()
    assert [p["PartNumber"] for p in listed] == [1, 2, 3, 4, 5]
    assert [p["ETag"] for p in listed] == [etags[n] for n in range(1, 6)]
    assert listed[-1]["Size"] == MiB

    parts = [{"PartNumber": n, "ETag": f'"{etags[n]}"'} for n in sorted(etags)]
    done = client.post(
        f"/{provider}/s3/multipart/{upload_id}/complete", query_string={"key": key}, json={"parts": parts}
    )
    assert done.status_code == 200, done.get_json()
    assert done.get_json()["key"] == key
    assert done.get_json()["location"].endswith(key.split("-", 1)[1])

    saved = save(client, provider, key)
    assert saved.status_code == 201, saved.get_json()
    assert saved.get_json()["file"]["size"] == len(DATA)
    assert downloaded(client, provider, saved.get_json()["file"]["id"]) == DATA


@pytest.mark.parametrize("provider", S3_FAMILY)
def test_abort_leaves_nothing_behind(app: Flask, client: FlaskClient, provider: str) -> None:
    created = client.post(
        f"/{provider}/s3/multipart", json={"filename": "x.bin", "type": "application/octet-stream"}
    )
    key, upload_id = created.get_json()["key"], created.get_json()["uploadId"]
    one = client.get(f"/{provider}/s3/multipart/{upload_id}/1", query_string={"key": key}).get_json()
    put_part(one["url"], PARTS[0])

    aborted = client.delete(f"/{provider}/s3/multipart/{upload_id}", query_string={"key": key})
    assert aborted.status_code == 200
    assert aborted.get_json() == {}
    with app.app_context():
        storage = get_provider(provider)
        assert all(u.upload_id != upload_id for u in storage.list_multipart_uploads())  # type: ignore[attr-defined]
        assert storage.head(key) is None
    again = client.delete(f"/{provider}/s3/multipart/{upload_id}", query_string={"key": key})
    assert again.status_code == 200
    gone = client.get(f"/{provider}/s3/multipart/{upload_id}", query_string={"key": key})
    assert gone.status_code == 404
    assert gone.get_json()["error"] == (
        f"no multipart upload {upload_id!r} for this key: it was completed, aborted, or never started"
    )


def started(client: FlaskClient, provider: str = "s3", parts: int = 2) -> tuple[str, str, dict[int, str]]:
    created = client.post(
        f"/{provider}/s3/multipart", json={"filename": "p.bin", "type": "application/octet-stream"}
    )
    key, upload_id = created.get_json()["key"], created.get_json()["uploadId"]
    urls = client.get(
        f"/{provider}/s3/multipart/{upload_id}/batch",
        query_string={"key": key, "partNumbers": ",".join(str(n) for n in range(1, parts + 1))},
    ).get_json()["presignedUrls"]
    etags = {int(n): put_part(url, PARTS[int(n) - 1] if int(n) < 5 else b"tail") for n, url in urls.items()}
    return key, upload_id, etags


@pytest.mark.parametrize(
    ("parts", "message"),
    [
        ([{"PartNumber": 1, "ETag": "E1"}, {"PartNumber": 3, "ETag": "x"}],
         "part 3 was not uploaded: upload it, or leave it out of parts"),
        ([{"PartNumber": 1, "ETag": "E1"}, {"PartNumber": 2, "ETag": "0123"}],
         "part 2's ETag is 'E2', not '0123'"),
        ([{"PartNumber": 2, "ETag": "E2"}, {"PartNumber": 1, "ETag": "E1"}],
         "parts must be in ascending PartNumber order, each part once"),
        ([{"PartNumber": 1, "ETag": "E1"}, {"PartNumber": 1, "ETag": "E1"}],
         "parts must be in ascending PartNumber order, each part once"),
        ([], "parts is required: a list of {PartNumber, ETag}, one per uploaded part"),
        ([{"PartNumber": 0, "ETag": "E1"}], "partNumber must be a whole number from 1 to 10000"),
        ([{"PartNumber": 1}], "part 1 needs its ETag, as the PUT of the part answered it"),
        (["1"], "each of parts must be an object {PartNumber, ETag}"),
    ],
)  # fmt: skip
def test_complete_refuses_a_wrong_or_missing_part(
    client: FlaskClient, parts: list[Any], message: str
) -> None:
    key, upload_id, etags = started(client)
    placeholders = {"E1": etags[1], "E2": etags[2]}
    body = [
        {**p, "ETag": placeholders.get(p["ETag"], p["ETag"])} if isinstance(p, dict) and "ETag" in p else p
        for p in parts
    ]
    expected = message.replace("'E2'", repr(etags[2]))
    response = client.post(
        f"/s3/s3/multipart/{upload_id}/complete", query_string={"key": key}, json={"parts": body}
    )
    assert response.status_code == 400, response.get_json()
    assert response.get_json() == {"success": False, "error": expected}


def test_complete_refuses_a_small_part_before_the_last(client: FlaskClient) -> None:
    created = client.post("/r2/s3/multipart", json={"filename": "p.bin", "type": "application/octet-stream"})
    key, upload_id = created.get_json()["key"], created.get_json()["uploadId"]
    urls = client.get(
        f"/r2/s3/multipart/{upload_id}/batch", query_string={"key": key, "partNumbers": "1,2"}
    ).get_json()["presignedUrls"]
    first, second = put_part(urls["1"], b"tiny"), put_part(urls["2"], PARTS[0])
    parts = [{"PartNumber": 1, "ETag": first}, {"PartNumber": 2, "ETag": second}]
    response = client.post(
        f"/r2/s3/multipart/{upload_id}/complete", query_string={"key": key}, json={"parts": parts}
    )
    assert response.status_code == 400
    assert response.get_json()["error"] == (
        "part 1 is 4 bytes; every part but the last must be at least 5242880 bytes (5 MiB)"
    )


def test_complete_over_the_size_limit_aborts_with_413(make_app: Callable[..., Flask]) -> None:
    client = make_app(MAX_UPLOAD_BYTES=str(6 * MiB)).test_client()
    key, upload_id, etags = started(client, "b2")
    parts = [{"PartNumber": n, "ETag": e} for n, e in sorted(etags.items())]
    response = client.post(
        f"/b2/s3/multipart/{upload_id}/complete", query_string={"key": key}, json={"parts": parts}
    )
    assert response.status_code == 413
    assert response.get_json()["error"] == (
        f"the parts add up to {10 * MiB} bytes, over the {6 * MiB} byte upload limit; the upload was aborted"
    )
    assert client.get(f"/b2/s3/multipart/{upload_id}", query_string={"key": key}).status_code == 404


@pytest.mark.parametrize("provider", S3_FAMILY)
def test_another_user_cannot_sign_list_complete_or_abort(client: FlaskClient, provider: str) -> None:
    key, upload_id, etags = started(client, provider, parts=1)
    intruder = as_user("mallory")
    expected = {"success": False, "error": "key was not issued to this user"}
    query = {"key": key}
    base = f"/{provider}/s3/multipart/{upload_id}"
    attempts = [
        client.get(base, query_string=query, headers=intruder),
        client.get(f"{base}/2", query_string=query, headers=intruder),
        client.get(f"{base}/batch", query_string={**query, "partNumbers": "2"}, headers=intruder),
        client.post(f"{base}/complete", query_string=query, headers=intruder,
                    json={"parts": [{"PartNumber": 1, "ETag": etags[1]}]}),
        client.delete(base, query_string=query, headers=intruder),
        sign(client, provider, "mallory", method="PUT", key=key, uploadId=upload_id, partNumber=2),
        sign(client, provider, "mallory", method="GET", key=key, uploadId=upload_id),
        sign(client, provider, "mallory", method="POST", key=key, uploadId=upload_id),
        sign(client, provider, "mallory", method="DELETE", key=key, uploadId=upload_id),
    ]  # fmt: skip
    for response in attempts:
        assert response.status_code == 403, response.get_json()
        assert response.get_json() == expected
    # The owner's upload is untouched.
    listed = client.get(base, query_string=query).get_json()
    assert [p["PartNumber"] for p in listed] == [1]


SIGNABLE = (
    "this route signs PutObject (PUT), CreateMultipartUpload (POST), UploadPart (PUT with uploadId and "
    "partNumber), ListParts (GET with uploadId), CompleteMultipartUpload (POST with uploadId) and "
    "AbortMultipartUpload (DELETE with uploadId) only; not "
)


@pytest.mark.parametrize(
    ("request_body", "status", "message"),
    [
        ({"method": "DELETE", "key": "K"}, 400, SIGNABLE + "DELETE"),
        ({"method": "HEAD", "key": "K", "uploadId": "u"}, 400,
         SIGNABLE + "HEAD with this uploadId and partNumber"),
        ({"method": "GET", "key": "K"}, 400, SIGNABLE + "GET"),
        ({"method": "PUT", "key": "K", "uploadId": "u"}, 400, SIGNABLE + "PUT with this uploadId and partNumber"),  # noqa: E501
        ({"method": "PUT", "key": "K", "uploadId": "u", "partNumber": 10001}, 400,
         "partNumber must be a whole number from 1 to 10000"),
        ({"method": "PUT", "key": "K", "uploadId": "u", "partNumber": 0}, 400,
         "partNumber must be a whole number from 1 to 10000"),
        ({"method": "PUT", "key": "K", "contentType": ""}, 400, "contentType must not be empty"),
        ({"method": "PUT", "key": "K", "contentType": "html"}, 400,
         "contentType is not a valid media type such as image/png"),
        ({"key": "K"}, 400, "method is required"),
        ({"method": "PUT"}, 400, "key is required"),
        ({"method": "PUT", "key": "K", "contentType": "text/plain", "bucket": "someone-elses"}, 400,
         "bucket must be 'BUCKET', the only bucket this route signs for"),
        ({"method": "PUT", "key": "K", "uploadId": "u", "partNumber": 1}, 403,
         "key was not issued to this user"),
        ({"method": "GET", "key": "../../etc/passwd", "uploadId": "u"}, 403,
         "key was not issued to this user"),
        ({"method": "PUT", "key": "K", "uploadId": "a\nb", "partNumber": 1}, 400,
         "uploadId is not a valid upload id"),
        ({"method": "PUT", "key": "K", "contentType": "text/plain", "expiresIn": 0}, 400,
         "expiresIn must be a whole number from 1 to 604800"),
        ({"method": "PUT", "key": "K", "contentType": "text/plain", "fileSize": 200 * MiB}, 413,
         f"fileSize {200 * MiB} is over the {100 * MiB} byte upload limit"),
        ({"method": "POST", "key": "K", "contentType": "text/plain", "fileSize": -1}, 400,
         "fileSize must not be negative"),
    ],
)  # fmt: skip
def test_sign_route_refuses_other_operations_buckets_and_keys(
    app: Flask, client: FlaskClient, request_body: dict[str, Any], status: int, message: str
) -> None:
    with app.app_context():
        bucket = get_provider("s3").bucket
    response = client.post("/s3/s3/sign", json=request_body)
    assert response.status_code == status, response.get_json()
    assert response.get_json() == {"success": False, "error": message.replace("BUCKET", bucket)}


@pytest.mark.parametrize(
    ("path", "query", "message"),
    [
        ("/s3/s3/multipart/u1", {}, "key is required"),
        ("/s3/s3/multipart/u1/batch", {"key": "k"}, "partNumbers is required, such as partNumbers=1,2,3"),
        ("/s3/s3/multipart/u1/batch", {"key": "k", "partNumbers": "1,x"},
         "partNumber must be a whole number from 1 to 10000"),
        ("/s3/s3/multipart/u1/0", {"key": "k"}, "partNumber must be a whole number from 1 to 10000"),
        ("/s3/s3/params", {"type": "text/plain"}, "filename is required"),
        ("/s3/s3/params", {"filename": "a.txt"}, "type is required"),
        ("/s3/s3/params", {"filename": "a.txt", "type": "text/plain", "size": "lots"},
         "size must be a whole number of bytes"),
    ],
)  # fmt: skip
def test_companion_routes_refuse_bad_input(
    client: FlaskClient, path: str, query: dict[str, str], message: str
) -> None:
    response = client.get(path, query_string=query)
    assert response.status_code == 400
    assert response.get_json() == {"success": False, "error": message}


def test_sign_route_signs_a_single_put_with_its_headers(client: FlaskClient) -> None:
    body = signed(client, "r2", method="PUT", key="note.txt", contentType="text/plain", fileSize=5)
    assert body["key"].endswith("-note.txt")
    assert body["headers"] == {"Content-Type": "text/plain"}
    assert requests.put(body["url"], data=b"hello", headers=body["headers"], timeout=10).status_code == 200
    assert save(client, "r2", body["key"]).status_code == 201


def test_params_answers_a_post_form_for_s3_bounded_by_the_limit(make_app: Callable[..., Flask]) -> None:
    client = make_app(MAX_UPLOAD_BYTES="1000").test_client()
    answer = client.get("/s3/s3/params", query_string={"filename": "form.txt", "type": "text/plain"})
    assert answer.status_code == 200, answer.get_json()
    params = answer.get_json()
    assert params["method"] == "POST"
    assert params["fields"]["key"] == params["key"]
    too_big = requests.post(params["url"], data=params["fields"], files={"file": b"x" * 1001}, timeout=10)
    assert too_big.status_code == 400, too_big.text  # content-length-range, enforced by the server
    posted = requests.post(params["url"], data=params["fields"], files={"file": b"form bytes"}, timeout=10)
    assert posted.status_code in (200, 201, 204), posted.text
    saved = save(client, "s3", params["key"])
    assert saved.status_code == 201, saved.get_json()
    assert saved.get_json()["file"]["size"] == len(b"form bytes")


@pytest.mark.parametrize("provider", ["r2", "b2"])
def test_params_answers_a_put_where_the_provider_has_no_post_policy(
    client: FlaskClient, provider: str
) -> None:
    params = client.get(
        f"/{provider}/s3/params", query_string={"filename": "a.txt", "type": "text/plain"}
    ).get_json()
    assert params["method"] == "PUT"
    assert params["fields"] == {}
    assert requests.put(params["url"], data=b"put", headers=params["headers"], timeout=10).status_code == 200
    assert save(client, provider, params["key"]).status_code == 201


def test_azure_has_no_s3_routes(client: FlaskClient) -> None:
    response = client.post("/azure/s3/sign", json={"method": "PUT", "key": "k"})
    assert response.status_code == 404


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            {"method": "PUT", "key": "\ud800", "uploadId": "u", "partNumber": 1},
            "key is not a key this service issues",
        ),
        ({"method": "GET", "key": "k", "uploadId": "\udfff"}, "uploadId is not a valid upload id"),
    ],
)
def test_sign_route_refuses_lone_surrogates_before_signing(
    client: FlaskClient, body: dict[str, Any], message: str
) -> None:
    response = client.post("/s3/s3/sign", data=json.dumps(body), content_type="application/json")
    assert response.status_code == 400
    assert response.get_json() == {"success": False, "error": message}


def test_batch_signs_at_most_100_parts_at_once(client: FlaskClient) -> None:
    numbers = ",".join(str(n) for n in range(1, 102))
    response = client.get("/s3/s3/multipart/u1/batch", query_string={"key": "k", "partNumbers": numbers})
    assert response.status_code == 400
    assert response.get_json() == {"success": False, "error": "partNumbers names at most 100 parts at once"}


def test_complete_refuses_more_parts_than_s3_allows(client: FlaskClient) -> None:
    parts = [{"PartNumber": n, "ETag": "e"} for n in range(1, 10_002)]
    response = client.post("/s3/s3/multipart/u1/complete", query_string={"key": "k"}, json={"parts": parts})
    assert response.status_code == 400
    assert response.get_json() == {"success": False, "error": "parts lists at most 10000 parts"}


def test_complete_takes_a_body_up_to_1_mib_and_names_the_limit_beyond(client: FlaskClient) -> None:
    response = client.post(
        "/s3/s3/multipart/u1/complete", query_string={"key": "k"}, data=b"x" * (1024**2 + 1),
        content_type="application/json",
    )  # fmt: skip
    assert response.status_code == 413
    assert response.get_json() == {"success": False, "error": "request body is over the 1048576 byte limit"}


# Uppy 6's signRequest mode, unchanged: {method, key, uploadId?, partNumber?}, no type, no size.

UPPY_KEY = "3f8e2c1a-0b5c-4d2e-9f1a-2b3c4d5e6f70-{name}"


@pytest.mark.parametrize("provider", S3_FAMILY)
def test_uppys_own_sign_request_uploads_a_file_in_one_put(
    client: FlaskClient, db: psycopg2.extensions.connection, provider: str
) -> None:
    answer = signed(client, provider, method="PUT", key=UPPY_KEY.format(name="notes.txt"))
    key = answer["key"]
    # The service picks the key (Uppy 6 uses the one it is given); Uppy's UUID is not kept.
    assert key.endswith("-notes.txt") and "3f8e2c1a" not in key
    assert answer["headers"] == {}
    # Uppy's XHR sends the file's own type.
    uploaded = requests.put(
        answer["url"], data=b"some notes", headers={"Content-Type": "text/plain"}, timeout=30
    )
    assert uploaded.status_code == 200, uploaded.text
    saved = save(client, provider, key)
    assert saved.status_code == 201, saved.get_json()
    assert saved.get_json()["file"]["fileName"] == "notes.txt"
    assert saved.get_json()["file"]["contentType"] == "text/plain"
    assert saved.get_json()["file"]["size"] == 10


@pytest.mark.parametrize("provider", S3_FAMILY)
def test_uppys_own_sign_request_uploads_a_file_in_parts(client: FlaskClient, provider: str) -> None:
    created = signed(client, provider, method="POST", key=UPPY_KEY.format(name="big.bin"))
    key = created["key"]
    assert key.endswith("-big.bin") and created["headers"] == {}
    answer = send_to(client, "POST", created["url"], headers={"Content-Type": "application/octet-stream"})
    assert answer.status_code == 200, answer.text
    [upload_id] = xml_text(answer.text, "UploadId")
    etags = []
    for number, part in enumerate(PARTS, start=1):
        url = signed(client, provider, method="PUT", key=key, uploadId=upload_id, partNumber=number)["url"]
        etags.append((number, put_part(url, part)))
    url = signed(client, provider, method="POST", key=key, uploadId=upload_id)["url"]
    done = send_to(client, "POST", url, data=complete_xml(etags), headers={"Content-Type": "application/xml"})
    assert done.status_code == 200, done.text
    assert xml_text(done.text, "Key") == [key]  # what Uppy reports as the uploaded key
    saved = save(client, provider, key)
    assert saved.status_code == 201, saved.get_json()
    assert saved.get_json()["file"]["size"] == len(DATA)
    assert hashlib.sha256(downloaded(client, provider, saved.get_json()["file"]["id"])).digest() == (
        hashlib.sha256(DATA).digest()
    )


@pytest.mark.parametrize("provider", S3_FAMILY)
@pytest.mark.parametrize(
    ("body", "stored_type", "status", "message"),
    [
        (b"<script>", "text/html", 415,
         "the uploaded file's content type text/html is not allowed; allowed: image/*; it was deleted"),
        (b"x" * 11, "image/png", 413,
         "the uploaded file is 11 bytes, over the 10 byte limit; it was deleted"),
    ],
)  # fmt: skip
def test_what_uppys_own_sign_request_cannot_bind_is_checked_at_save(
    make_app: Callable[..., Flask], provider: str, body: bytes, stored_type: str, status: int, message: str
) -> None:
    app = make_app(ALLOWED_CONTENT_TYPES="image/*", MAX_UPLOAD_BYTES="10")
    client = app.test_client()
    answer = signed(client, provider, method="PUT", key=UPPY_KEY.format(name="cat.png"))
    key = answer["key"]
    assert requests.put(answer["url"], data=body, headers={"Content-Type": stored_type}, timeout=30).ok
    response = save(client, provider, key)
    assert (response.status_code, response.get_json()["error"]) == (status, message)
    with app.app_context():
        assert get_provider(provider).head(key) is None

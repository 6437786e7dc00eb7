"""Each guide's curl sequence, run verbatim with curl against the service over real HTTP."""

from __future__ import annotations

import json
import shlex
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg2.extensions
import pytest
from flask import Flask
from werkzeug.serving import make_server

from tests import corpus
from tests.helpers import KEY_COLUMNS, rows

pytestmark = pytest.mark.integration


@pytest.fixture
def serve(make_app: Callable[..., Flask]) -> Iterator[Callable[..., str]]:
    """Serve an app on a real port; return its base URL."""
    servers: list[Any] = []

    def start(**overrides: str) -> str:
        server = make_server("127.0.0.1", 0, make_app(**overrides), threaded=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_port}"

    yield start
    for server in servers:
        server.shutdown()


def curl(command: str, base: str, cwd: Path, **placeholders: str) -> tuple[int, str]:
    """Run one of the guides' curl commands, with its placeholders filled in."""
    command = command.replace("http://localhost:3000", base)
    for name, value in placeholders.items():
        command = command.replace(f"<{name}>", value)
    args = shlex.split(command.replace("\\\n", " "))
    args[1:1] = ["-sS", "-w", "\n%{http_code}"]
    result = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=30, check=True)
    body, _, status = result.stdout.rpartition("\n")
    return int(status), body


# (guide, DEFAULT_PROVIDER, table, step 1, step 2, step 3), copied from the guides.
GUIDES = [
    (
        "s3",
        "s3",
        """curl -X POST http://localhost:3000/presign-upload \\
     -H "Content-Type: application/json" \\
     -d '{"fileName": "test-s3.txt", "contentType": "text/plain"}'""",
        """curl -X PUT "<PRESIGNED_URL>" \\
     --upload-file test-s3.txt \\
     -H "Content-Type: text/plain\"""",
        """curl -X POST http://localhost:3000/save-metadata \\
     -H "Content-Type: application/json" \\
     -d '{"objectKey": "<OBJECT_KEY>", "publicFileUrl": "<PUBLIC_URL>"}'""",
    ),
    (
        "r2",
        "r2",
        """curl -X POST http://localhost:3000/presign-upload \\
     -H "Content-Type: application/json" \\
     -d '{"fileName": "test-image.png", "contentType": "image/png"}'""",
        """curl -X PUT "<PRESIGNED_URL>" \\
     --upload-file test-image.png \\
     -H "Content-Type: image/png\"""",
        """curl -X POST http://localhost:3000/save-metadata \\
     -H "Content-Type: application/json" \\
     -d '{"objectKey": "<OBJECT_KEY>", "publicFileUrl": "<PUBLIC_URL>"}'""",
    ),
    (
        "b2",
        "s3",
        """curl -X POST http://localhost:3000/presign-b2-upload \\
     -H "Content-Type: application/json" \\
     -d '{"fileName": "test-b2.png", "contentType": "image/png"}'""",
        """curl -X PUT "<PRESIGNED_URL>" \\
     --upload-file test-b2.png \\
     -H "Content-Type: image/png\"""",
        """curl -X POST http://localhost:3000/save-b2-metadata \\
     -H "Content-Type: application/json" \\
     -d '{"objectKey": "<OBJECT_KEY>", "publicFileUrl": "<PUBLIC_URL>"}'""",
    ),
    (
        "azure",
        "s3",
        """curl -X POST http://localhost:3000/generate-upload-sas \\
     -H "Content-Type: application/json" \\
     -d '{"fileName": "test-azure.txt", "contentType": "text/plain"}'""",
        """curl -X PUT "<SAS_URL>" \\
     --upload-file test-azure.txt \\
     -H "Content-Type: text/plain" \\
     -H "x-ms-blob-type: BlockBlob\"""",
        """curl -X POST http://localhost:3000/save-metadata \\
     -H "Content-Type: application/json" \\
     -d '{"blobName": "<BLOB_NAME_FROM_STEP_1>", "fileUrl": "<FILE_URL_FROM_STEP_1>"}'""",
    ),
]


@pytest.mark.parametrize(
    ("provider", "default", "step1", "step2", "step3"), GUIDES, ids=[g[0] for g in GUIDES]
)
def test_guide_curl_sequence(
    serve: Callable[..., str],
    db: psycopg2.extensions.connection,
    tmp_path: Path,
    provider: str,
    default: str,
    step1: str,
    step2: str,
    step3: str,
) -> None:
    base = serve(DEFAULT_PROVIDER=default)
    upload = shlex.split(step2.replace("\\\n", " "))
    file_name = upload[upload.index("--upload-file") + 1]
    # The file the guide names: a real PNG for test-image.png (save-metadata checks the bytes).
    data = corpus.png() if file_name.endswith(".png") else b"bytes of " + file_name.encode()
    (tmp_path / file_name).write_bytes(data)

    status, body = curl(step1, base, tmp_path)
    assert status == 200, body
    answer = json.loads(body)
    assert answer["success"] is True

    status, body = curl(
        step2, base, tmp_path, PRESIGNED_URL=answer["presignedUrl"], SAS_URL=answer.get("sasUrl", "")
    )
    assert status == (201 if provider == "azure" else 200), body

    status, body = curl(
        step3,
        base,
        tmp_path,
        OBJECT_KEY=answer["objectKey"],
        PUBLIC_URL=answer["publicFileUrl"] or "",
        BLOB_NAME_FROM_STEP_1=answer.get("blobName", ""),
        FILE_URL_FROM_STEP_1=answer.get("fileUrl", ""),
    )
    assert status == 201, body
    assert json.loads(body)["success"] is True

    [row] = rows(db, provider)
    assert row[KEY_COLUMNS[provider]] == answer["objectKey"]
    assert row["user_id"] == "user_123"
    assert row["size_bytes"] == len(data)


# The fifth seed: Backblaze's direct-upload article, with its own variable names.
ARTICLE = (
    'curl "http://localhost:3000/signed-request?name=test-article.txt"',
    # The article's browser sends fetch(url, {method: 'PUT', body: file}): no header of ours.
    'curl -X PUT "<URL>" --upload-file test-article.txt',
    """curl -X POST http://localhost:3000/save-b2-metadata \\
     -H "Content-Type: application/json" \\
     -d '{"objectKey": "<OBJECT_KEY>"}'""",
)


def test_backblaze_articles_signed_request_sequence(
    serve: Callable[..., str], app_env: dict[str, str], db: psycopg2.extensions.connection, tmp_path: Path
) -> None:
    base = serve(
        B2_BUCKET=app_env["B2_BUCKET_NAME"],
        B2_KEY_ID=app_env["B2_APPLICATION_KEY_ID"],
        B2_BUCKET_NAME=None,
        B2_APPLICATION_KEY_ID=None,
    )
    (tmp_path / "test-article.txt").write_bytes(b"straight to B2")
    step1, step2, step3 = ARTICLE

    status, body = curl(step1, base, tmp_path)
    assert status == 200, body
    answer = json.loads(body)
    assert answer["provider"] == "b2"
    assert answer["objectKey"].endswith("-test-article.txt")
    assert answer["url"] == answer["presignedUrl"]
    assert "X-Amz-Expires=60&" in answer["url"]  # the article's 60 seconds
    assert "X-Amz-SignedHeaders=host&" in answer["url"]  # no type bound

    status, body = curl(step2, base, tmp_path, URL=answer["url"])
    assert status == 200, body

    status, body = curl(step3, base, tmp_path, OBJECT_KEY=answer["objectKey"])
    assert status == 201, body
    [row] = rows(db, "b2")
    assert row["object_key"] == answer["objectKey"]
    assert row["file_name"] == "test-article.txt"
    assert row["size_bytes"] == len(b"straight to B2")


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("", "name is required"),
        ("?name=..%2F", "name has nothing left once path parts and control characters are removed"),
    ],
)
def test_signed_request_refuses_a_missing_or_empty_name(
    serve: Callable[..., str], tmp_path: Path, query: str, message: str
) -> None:
    status, body = curl(f'curl "http://localhost:3000/signed-request{query}"', serve(), tmp_path)
    assert status == 400
    assert json.loads(body) == {"success": False, "error": message}


def test_signed_request_is_refused_on_a_public_bucket(serve: Callable[..., str], tmp_path: Path) -> None:
    # Its PUT binds no type: on a bucket anyone can read, an HTML page would be served as one.
    status, body = curl(
        'curl "http://localhost:3000/signed-request?name=a.txt"', serve(B2_PUBLIC_READ="on"), tmp_path
    )
    assert status == 400
    assert json.loads(body) == {
        "success": False,
        "error": "contentType is required: the b2 bucket is public, so an upload's type must be signed",
    }

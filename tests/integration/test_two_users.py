"""Two users with real tokens: every path by which bob could touch alice's upload is refused."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg2.extensions
import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.helpers import PROVIDERS, put, rows
from tests.tokens import HS_SECRET, bearer, hs256

pytestmark = pytest.mark.integration

ALICE = bearer(hs256("alice"))
BOB = bearer(hs256("bob"))


@pytest.fixture
def client(make_app: Callable[..., Flask]) -> FlaskClient:
    return make_app(AUTH_MODE=None, AUTH_JWT_SECRET=HS_SECRET).test_client()


def presign_as(client: FlaskClient, path: str, who: dict[str, str]) -> dict[str, Any]:
    response = client.post(path, json={"fileName": "alice.txt", "contentType": "text/plain"}, headers=who)
    assert response.status_code == 200, response.get_json()
    body: dict[str, Any] = response.get_json()
    return body


SAVE_ROUTES = {
    "s3": ["/s3/save-metadata", "/save-metadata"],
    "r2": ["/r2/save-metadata", "/save-metadata"],
    "b2": ["/b2/save-metadata", "/save-metadata", "/save-b2-metadata"],
    "azure": ["/azure/save-metadata", "/save-metadata"],
}


@pytest.mark.parametrize("provider", PROVIDERS)
def test_bob_cannot_save_alices_key_on_any_route(
    client: FlaskClient, db: psycopg2.extensions.connection, provider: str
) -> None:
    presigned = presign_as(client, f"/{provider}/presign-upload", ALICE)
    put(presigned, b"alice's data")
    for path in SAVE_ROUTES[provider]:
        for field in ("objectKey", "blobName") if provider == "azure" else ("objectKey",):
            response = client.post(path, json={field: presigned["objectKey"]}, headers=BOB)
            assert response.status_code == 403, (path, field)
            assert response.get_json()["error"] == f"{field} was not issued to this user"
    assert rows(db, provider) == []
    # Alice's own save still works afterwards, and bob still cannot claim the saved row.
    assert (
        client.post(
            f"/{provider}/save-metadata", json={"objectKey": presigned["objectKey"]}, headers=ALICE
        ).status_code
        == 201
    )
    for path in SAVE_ROUTES[provider]:
        response = client.post(path, json={"objectKey": presigned["objectKey"]}, headers=BOB)
        assert response.status_code == 403
    [row] = rows(db, provider)
    assert row["user_id"] == "alice"


@pytest.mark.parametrize(
    ("presign_path", "save_path", "provider"),
    [
        ("/presign-upload", "/save-metadata", "s3"),
        ("/presign-b2-upload", "/save-b2-metadata", "b2"),
        ("/generate-upload-sas", "/save-metadata", "azure"),
    ],
)
def test_guides_sequences_work_for_the_right_user_only(
    client: FlaskClient, db: psycopg2.extensions.connection, presign_path: str, save_path: str, provider: str
) -> None:
    presigned = presign_as(client, presign_path, ALICE)
    put(presigned, b"guide bytes")
    body = {"objectKey": presigned["objectKey"], "publicFileUrl": presigned["publicFileUrl"]}
    assert client.post(save_path, json=body, headers=BOB).status_code == 403
    assert client.post(save_path, json=body, headers=ALICE).status_code == 201
    assert client.post(save_path, json=body, headers=ALICE).status_code == 200
    assert [r["user_id"] for r in rows(db, provider)] == ["alice"]


def test_every_upload_route_needs_a_token(client: FlaskClient) -> None:
    paths = [f"/{p}/{r}" for p in PROVIDERS for r in ("presign-upload", "save-metadata")]
    paths += [
        "/presign-upload",
        "/save-metadata",
        "/presign-b2-upload",
        "/save-b2-metadata",
        "/generate-upload-sas",
    ]
    for path in paths:
        response = client.post(path, json={"objectKey": "k", "fileName": "a", "contentType": "text/plain"})
        assert response.status_code == 401, path

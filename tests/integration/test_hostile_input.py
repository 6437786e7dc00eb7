"""Whatever a client sends, the answer is never a 5xx and always the JSON error shape."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import pytest
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.integration

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
field_values = st.one_of(json_values, st.text(max_size=300), st.integers(min_value=-(2**70), max_value=2**70))

presign_bodies = st.fixed_dictionaries(
    {},
    optional={"fileName": field_values, "contentType": field_values, "fileSize": field_values},
)
save_bodies = st.fixed_dictionaries(
    {}, optional={"objectKey": field_values, "blobName": field_values, "publicFileUrl": field_values}
)

PATHS = ["/s3/presign-upload", "/azure/presign-upload", "/presign-upload", "/generate-upload-sas"]
SAVE_PATHS = ["/r2/save-metadata", "/azure/save-metadata", "/save-metadata", "/save-b2-metadata"]


def assert_clean_refusal_or_success(response: Any) -> None:
    assert response.status_code < 500, response.get_json()
    body = response.get_json()
    assert isinstance(body, dict)
    if response.status_code >= 400:
        assert body["success"] is False
        assert isinstance(body["error"], str) and body["error"]
        assert "Traceback" not in body["error"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=presign_bodies, path=st.sampled_from(PATHS))
def test_presign_never_fails_on_any_json(client: FlaskClient, body: dict[str, Any], path: str) -> None:
    assert_clean_refusal_or_success(client.post(path, json=body))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=save_bodies, path=st.sampled_from(SAVE_PATHS))
def test_save_never_fails_on_any_json(client: FlaskClient, body: dict[str, Any], path: str) -> None:
    assert_clean_refusal_or_success(client.post(path, json=body))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=200), path=st.sampled_from(PATHS + SAVE_PATHS))
def test_any_bytes_get_a_clean_answer(client: FlaskClient, data: bytes, path: str) -> None:
    assert_clean_refusal_or_success(client.post(path, data=data, content_type="application/json"))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.text(min_size=1, max_size=300))
def test_any_file_name_gives_a_safe_key_or_a_400(client: FlaskClient, name: str) -> None:
    response = client.post(
        "/s3/presign-upload", data=json.dumps({"fileName": name, "contentType": "text/plain"})
    )
    assert_clean_refusal_or_success(response)
    if response.status_code == 200:
        key = response.get_json()["objectKey"]
        prefix, tail = key.split("-", 1)
        assert len(prefix) == 40
        assert "/" not in tail and "\\" not in tail
        assert all(ord(ch) >= 0x20 and ord(ch) != 0x7F for ch in key)
        assert len(tail.encode("utf-8")) <= 200


sign_bodies = st.fixed_dictionaries(
    {},
    optional={
        "method": st.sampled_from(["PUT", "POST", "GET", "DELETE", "put", "HEAD"]) | field_values,
        "key": field_values,
        "uploadId": field_values,
        "partNumber": field_values,
        "expiresIn": field_values,
        "contentType": field_values,
        "fileName": field_values,
        "fileSize": field_values,
        "bucket": field_values,
    },
)
parts_bodies = st.fixed_dictionaries(
    {},
    optional={
        "parts": st.lists(
            st.fixed_dictionaries({}, optional={"PartNumber": field_values, "ETag": field_values})
            | json_values,
            max_size=4,
        )
        | field_values
    },
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=sign_bodies, provider=st.sampled_from(["s3", "r2", "b2"]))
def test_sign_route_never_fails_on_any_json(client: FlaskClient, body: dict[str, Any], provider: str) -> None:
    assert_clean_refusal_or_success(client.post(f"/{provider}/s3/sign", json=body))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    body=parts_bodies, key=st.text(max_size=50), upload_id=st.text(max_size=50).filter(lambda s: "/" not in s)
)
def test_complete_never_fails_on_any_json(
    client: FlaskClient, body: dict[str, Any], key: str, upload_id: str
) -> None:
    response = client.post(
        f"/s3/s3/multipart/{quote(upload_id, safe='') or 'u'}/complete", query_string={"key": key}, json=body
    )
    assert_clean_refusal_or_success(response)

"""The contract file: valid as written, and every limit it states is the code's own constant."""

from __future__ import annotations

from typing import Any

import pytest
from openapi_spec_validator import validate

from app.config import MAX_URL_EXPIRY_SECONDS, PROVIDERS, S3_FAMILY, load_settings
from app.openapi import build_document, load_contract
from app.uploads.files import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE
from app.uploads.schemas import (
    MAX_BATCH_PARTS,
    MAX_CONTENT_TYPE_LENGTH,
    MAX_FILE_NAME_LENGTH,
    MAX_KEY_LENGTH,
    MAX_PART_NUMBER,
)


@pytest.fixture(scope="module")
def contract() -> dict[str, Any]:
    return load_contract()


def schema(document: dict[str, Any], name: str) -> dict[str, Any]:
    properties: dict[str, Any] = document["components"]["schemas"][name]["properties"]
    return properties


def parameter(operation: dict[str, Any], name: str) -> dict[str, Any]:
    return next(p for p in operation["parameters"] if p.get("name") == name)


def test_the_contract_file_is_valid_openapi_3_1_as_written(contract: dict[str, Any]) -> None:
    assert contract["openapi"] == "3.1.0"
    validate(contract)


def test_its_lengths_are_the_parsers_limits(contract: dict[str, Any]) -> None:
    presign = schema(contract, "PresignRequest")
    assert presign["fileName"]["maxLength"] == MAX_FILE_NAME_LENGTH
    assert presign["contentType"]["maxLength"] == MAX_CONTENT_TYPE_LENGTH
    save = schema(contract, "SaveRequest")
    assert save["objectKey"]["maxLength"] == save["blobName"]["maxLength"] == MAX_KEY_LENGTH


def test_its_part_numbers_expiry_and_batch_size_are_the_multipart_limits(contract: dict[str, Any]) -> None:
    sign = schema(contract, "SignRequest")
    assert sign["partNumber"]["maximum"] == MAX_PART_NUMBER
    assert sign["expiresIn"]["maximum"] == MAX_URL_EXPIRY_SECONDS
    paths = contract["x-s3-family-paths"]
    one = paths["/{provider}/s3/multipart/{upload_id}/{part_number}"]["get"]
    assert parameter(one, "part_number")["description"] == f"1 to {MAX_PART_NUMBER}."
    batch = paths["/{provider}/s3/multipart/{upload_id}/batch"]["get"]
    assert f"at most {MAX_BATCH_PARTS})" in parameter(batch, "partNumbers")["description"]


def test_its_page_size_is_the_listings(contract: dict[str, Any]) -> None:
    listing = contract["x-provider-paths"]["/{provider}/files"]["get"]
    limit = parameter(listing, "limit")["schema"]
    assert (limit["maximum"], limit["default"]) == (MAX_PAGE_SIZE, DEFAULT_PAGE_SIZE)


def test_its_provider_names_are_the_services(contract: dict[str, Any]) -> None:
    for name, field in (
        ("PresignResponse", "provider"),
        ("File", "provider"),
        ("Providers", "defaultProvider"),
    ):
        assert schema(contract, name)[field]["enum"] == list(PROVIDERS)


def test_the_served_document_has_each_providers_routes_and_the_configured_size_limit() -> None:
    settings = load_settings({"DATABASE_URL": "postgresql://h/d", "AUTH_MODE": "dev", "APP_ENV": "test",
                              "MAX_UPLOAD_BYTES": "12345"})  # fmt: skip
    document = build_document(settings)
    assert schema(document, "PresignRequest")["fileSize"]["maximum"] == 12345
    for provider in PROVIDERS:
        post = document["paths"][f"/{provider}/presign-upload"]["post"]
        assert post["summary"] == f"Presign an upload to {provider}"
        assert (f"/{provider}/s3/sign" in document["paths"]) == (provider in S3_FAMILY)
    assert not [key for key in document if key.startswith("x-")]
    validate(document)

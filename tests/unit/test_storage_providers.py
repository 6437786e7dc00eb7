"""The provider classes alone: URL shapes per provider, signed headers, bucket set-up (moto), SAS rules."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
from moto import mock_aws

from app.config import AzureSettings, S3CompatibleSettings, load_settings
from app.storage.azure import AzureBlobProvider
from app.storage.s3 import S3CompatibleProvider


def s3_provider(
    name: str, region: str, bucket: str, endpoint: str | None, style: str = "path"
) -> S3CompatibleProvider:
    settings = S3CompatibleSettings(
        name=name,
        bucket=bucket,
        access_key_id="AKIDEXAMPLE",
        secret_access_key="secret",
        region=region,
        endpoint_url=endpoint,
        public_base_url=None,
        addressing_style=style,  # type: ignore[arg-type]
    )
    return S3CompatibleProvider(settings)


@pytest.mark.parametrize("region", ["us-east-1", "eu-west-1"])
def test_s3_urls_use_the_buckets_regional_host(region: str) -> None:
    provider = s3_provider("s3", region, "my-bucket", None, "virtual")
    upload = provider.presign_upload("k-a b.txt", "text/plain", 3, 300)
    url = urlsplit(upload.url)
    assert url.netloc == f"my-bucket.s3.{region}.amazonaws.com"
    assert url.path == "/k-a%20b.txt"
    query = parse_qs(url.query)
    assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
    assert query["X-Amz-SignedHeaders"] == ["content-length;content-type;host"]
    assert f"/{region}/s3/aws4_request" in query["X-Amz-Credential"][0]
    assert provider.object_url("k-a b.txt") == f"https://my-bucket.s3.{region}.amazonaws.com/k-a%20b.txt"


def test_r2_and_b2_urls_are_path_style_on_their_endpoints() -> None:
    r2 = s3_provider("r2", "auto", "files", "https://acct.r2.cloudflarestorage.com")
    url = urlsplit(r2.presign_upload("k.png", "image/png", None, 60).url)
    assert (url.netloc, url.path) == ("acct.r2.cloudflarestorage.com", "/files/k.png")
    assert "/auto/s3/aws4_request" in parse_qs(url.query)["X-Amz-Credential"][0]

    b2 = s3_provider("b2", "us-west-004", "b2files", "https://s3.us-west-004.backblazeb2.com")
    url = urlsplit(b2.presign_upload("k.png", "image/png", None, 60).url)
    assert (url.netloc, url.path) == ("s3.us-west-004.backblazeb2.com", "/b2files/k.png")
    assert "/us-west-004/s3/aws4_request" in parse_qs(url.query)["X-Amz-Credential"][0]
    assert b2.object_url("k.png") == "https://s3.us-west-004.backblazeb2.com/b2files/k.png"


def test_presign_answers_the_headers_the_put_must_carry() -> None:
    provider = s3_provider("s3", "us-east-1", "bucket", "http://127.0.0.1:1")
    upload = provider.presign_upload("k", "image/png", None, 60)
    assert upload.method == "PUT"
    assert upload.headers == {"Content-Type": "image/png"}
    assert "content-length" not in parse_qs(urlsplit(upload.url).query)["X-Amz-SignedHeaders"][0]


@mock_aws
@pytest.mark.parametrize("region", ["us-east-1", "eu-west-1"])
def test_ensure_bucket_creates_it_once_in_its_region_and_cors_is_stored(region: str) -> None:
    provider = s3_provider("s3", region, "unit-bucket", None, "virtual")
    assert provider.ensure_bucket() is True
    assert provider.ensure_bucket() is False
    client = boto3.client("s3", region_name=region)
    location = client.get_bucket_location(Bucket="unit-bucket")["LocationConstraint"]
    assert location == (None if region == "us-east-1" else region)
    provider.set_cors(["https://app.example.com"])
    [rule] = client.get_bucket_cors(Bucket="unit-bucket")["CORSRules"]
    assert rule["AllowedOrigins"] == ["https://app.example.com"]
    assert set(rule["AllowedMethods"]) >= {"PUT", "GET", "HEAD"}
    assert rule["ExposeHeaders"] == ["ETag"]


def test_azure_sas_is_https_only_on_a_real_account() -> None:
    env = {
        "DATABASE_URL": "postgresql://localhost/x",
        "AUTH_MODE": "dev",
        "APP_ENV": "test",
        "AZURE_STORAGE_CONNECTION_STRING": "AccountName=acct;AccountKey=a2V5LWtleQ==",
        "AZURE_STORAGE_CONTAINER_NAME": "uploads",
    }
    settings = load_settings(env).providers["azure"]
    assert isinstance(settings, AzureSettings)
    provider = AzureBlobProvider(settings)
    upload = provider.presign_upload("k é.txt", "text/plain", None, 300, in_one_request=True)
    url = urlsplit(upload.url)
    assert url.scheme == "https"
    assert url.netloc == "acct.blob.core.windows.net"
    assert url.path == "/uploads/k%20%C3%A9.txt"
    # Blocks go to the staging blob that save-metadata promotes to the key.
    in_blocks = urlsplit(provider.presign_upload("k é.txt", "text/plain", None, 300).url)
    assert in_blocks.path == "/uploads/.staging/k%20%C3%A9.txt"
    query = parse_qs(url.query)
    assert query["spr"] == ["https"]
    assert query["sp"] == ["c"]
    assert query["sr"] == ["b"]
    assert parse_qs(in_blocks.query)["sp"] == ["cw"]
    assert upload.headers == {"Content-Type": "text/plain", "x-ms-blob-type": "BlockBlob"}


def test_a_create_only_put_signs_if_none_match_where_the_provider_is_write_once() -> None:
    provider = s3_provider("r2", "auto", "files", "https://acct.r2.cloudflarestorage.com")
    upload = provider.presign_upload("k.txt", "text/plain", 3, 60, create_only=True)
    assert upload.headers == {"Content-Type": "text/plain", "If-None-Match": "*"}
    signed = parse_qs(urlsplit(upload.url).query)["X-Amz-SignedHeaders"]
    assert signed == ["content-length;content-type;host;if-none-match"]
    plain = provider.presign_upload("k.txt", "text/plain", 3, 60)
    assert plain.headers == {"Content-Type": "text/plain"}
    assert "if-none-match" not in parse_qs(urlsplit(plain.url).query)["X-Amz-SignedHeaders"][0]

"""Our SigV4 presigner gives botocore's URLs byte for byte, and the S3 server accepts them."""

from __future__ import annotations

import base64
import functools
import json
from datetime import UTC, datetime
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.config import S3CompatibleSettings
from app.storage.s3 import S3CompatibleProvider, quote_key

NOW = datetime(2026, 11, 21, 5, 9, 45, tzinfo=UTC)

CONFIGS = [
    ("s3", "us-east-1", None, "virtual", "my-bucket"),
    ("s3", "eu-west-1", None, "virtual", "my-bucket"),
    ("s3", "ap-southeast-2", None, "path", "dotted.bucket.name"),
    ("r2", "auto", "https://acct123.r2.cloudflarestorage.com", "path", "files"),
    ("b2", "us-west-004", "https://s3.us-west-004.backblazeb2.com", "path", "b2-files"),
    ("s3", "us-east-1", "http://127.0.0.1:8333", "path", "dev-s3-uploads"),
    ("s3", "us-east-1", "https://minio.example.com:9000", "path", "bucket"),
    ("s3", "us-east-1", "https://s3.example.com:443", "path", "bucket"),
]


@functools.cache
def provider(name: str, region: str, endpoint: str | None, style: str, bucket: str) -> S3CompatibleProvider:
    return S3CompatibleProvider(
        S3CompatibleSettings(
            name=name,
            bucket=bucket,
            access_key_id="AKIAEXAMPLE123",
            secret_access_key="wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            region=region,
            endpoint_url=endpoint,
            public_base_url=None,
            addressing_style=style,  # type: ignore[arg-type]
        )
    )


def botocore_url(
    p: S3CompatibleProvider, key: str, content_type: str, length: int | None, expires: int
) -> str:
    params: dict[str, object] = {"Bucket": p.bucket, "Key": key, "ContentType": content_type}
    if length is not None:
        params["ContentLength"] = length
    with mock.patch("botocore.auth.get_current_datetime", return_value=NOW.replace(tzinfo=None)):
        url: str = p._client.generate_presigned_url(
            "put_object", Params=params, ExpiresIn=expires, HttpMethod="PUT"
        )
    return url


def ours(p: S3CompatibleProvider, key: str, content_type: str, length: int | None, expires: int) -> str:
    signed = {"Content-Type": content_type}
    if length is not None:
        signed["Content-Length"] = str(length)
    return p._signer.presign("PUT", f"{p._api_base}/{quote_key(key)}", signed, expires, now=NOW)


@pytest.mark.parametrize("config", CONFIGS, ids=[f"{c[0]}-{c[1]}-{c[3]}-{c[2]}" for c in CONFIGS])
@pytest.mark.parametrize(
    "key",
    [
        "0f8c-report.pdf",
        "uuid-résumé 2024 (final) #1 100%.txt",
        "uuid-~!*'()[]$&+,;=@?.txt",
        "uuid-日本語のファイル.txt",
        "uuid-emoji-😀.png",
        "uuid-a  b\tc.txt",
    ],
)
@pytest.mark.parametrize(
    "content_type", ["text/plain", "text/plain; charset=utf-8", "image/svg+xml", 'a/b;  x="y z"']
)
@pytest.mark.parametrize("length", [None, 0, 1, 5 * 1024**3])
def test_presigned_put_urls_match_botocore_byte_for_byte(
    config: tuple[str, str, str | None, str, str], key: str, content_type: str, length: int | None
) -> None:
    p = provider(*config)
    for expires in (1, 300, 604800):
        assert ours(p, key, content_type, length, expires) == botocore_url(
            p, key, content_type, length, expires
        )


@settings(max_examples=300, deadline=None)
@given(
    key=st.text(min_size=1, max_size=60).filter(lambda k: "\x00" not in k),
    content_type=st.from_regex(
        r"[a-z]{1,8}/[a-z0-9.+-]{1,12}(; ?[a-z]{1,5}=[a-z0-9-]{1,6})?", fullmatch=True
    ),
    length=st.none() | st.integers(min_value=0, max_value=10**12),
    config=st.sampled_from(CONFIGS),
)
def test_presigned_urls_match_botocore_for_any_key(
    key: str, content_type: str, length: int | None, config: tuple[str, str, str | None, str, str]
) -> None:
    p = provider(*config)
    assert ours(p, key, content_type, length, 300) == botocore_url(p, key, content_type, length, 300)


def test_signing_key_follows_the_date() -> None:
    p = provider(*CONFIGS[0])
    first = p._signer.presign("PUT", f"{p._api_base}/k", {"Content-Type": "a/b"}, 60, now=NOW)
    next_day = NOW.replace(day=22)
    second = p._signer.presign("PUT", f"{p._api_base}/k", {"Content-Type": "a/b"}, 60, now=next_day)
    with mock.patch("botocore.auth.get_current_datetime", return_value=next_day.replace(tzinfo=None)):
        expected = p._client.generate_presigned_url(
            "put_object",
            Params={"Bucket": p.bucket, "Key": "k", "ContentType": "a/b"},
            ExpiresIn=60,
            HttpMethod="PUT",
        )
    assert first != second
    assert second == expected


@pytest.mark.parametrize("config", CONFIGS, ids=[f"{c[0]}-{c[1]}-{c[3]}-{c[2]}" for c in CONFIGS])
@pytest.mark.parametrize("key", ["0f8c-report.pdf", "uuid-résumé 2024 (final) #1 100%.txt", "a/b/😀.png"])
def test_presigned_head_urls_match_botocore_byte_for_byte(
    config: tuple[str, str, str | None, str, str], key: str
) -> None:
    # save-metadata's HEAD is sent through such a URL, not through botocore.
    p = provider(*config)
    with mock.patch("botocore.auth.get_current_datetime", return_value=NOW.replace(tzinfo=None)):
        expected = p._client.generate_presigned_url(
            "head_object", Params={"Bucket": p.bucket, "Key": key}, ExpiresIn=60, HttpMethod="HEAD"
        )
    assert p._signer.presign("HEAD", f"{p._api_base}/{quote_key(key)}", {}, 60, now=NOW) == expected


@pytest.mark.parametrize("config", CONFIGS, ids=[f"{c[0]}-{c[1]}-{c[3]}-{c[2]}" for c in CONFIGS])
@pytest.mark.parametrize("key", ["0f8c-report.pdf", "uuid-résumé 2024 (final) #1 100%.txt", "a/b/😀.png"])
@pytest.mark.parametrize(
    "disposition",
    [None, "attachment; filename=\"r_sum_.txt\"; filename*=UTF-8''r%C3%A9sum%C3%A9.txt", "inline; x=~!*'()"],
)
@pytest.mark.parametrize("content_type", [None, "image/png", "text/plain; charset=utf-8"])
def test_presigned_download_urls_match_botocore_byte_for_byte(
    config: tuple[str, str, str | None, str, str], key: str, disposition: str | None, content_type: str | None
) -> None:
    # Download links are signed here for every listed file, so they skip botocore too.
    p = provider(*config)
    params = {"Bucket": p.bucket, "Key": key}
    if disposition is not None:
        params["ResponseContentDisposition"] = disposition
    if content_type is not None:
        params["ResponseContentType"] = content_type
    with mock.patch("botocore.auth.get_current_datetime", return_value=NOW.replace(tzinfo=None)):
        expected = p._client.generate_presigned_url("get_object", Params=params, ExpiresIn=900)
    with mock.patch("app.storage.sigv4.datetime") as clock:
        clock.now.return_value = NOW
        assert p.presign_download(key, 900, disposition, content_type) == expected


def test_extra_query_parameters_must_sort_after_the_signature_ones() -> None:
    p = provider(*CONFIGS[0])
    with pytest.raises(ValueError, match="lower-case"):
        p._signer.presign("GET", f"{p._api_base}/k", {}, 60, query={"Response": "x"})


def botocore_post(
    p: S3CompatibleProvider, key: str, content_type: str, max_bytes: int, expires: int
) -> tuple[str, dict[str, str]]:
    frozen = NOW.replace(tzinfo=None)
    with (
        mock.patch("botocore.auth.get_current_datetime", return_value=frozen),
        mock.patch("botocore.signers.get_current_datetime", return_value=frozen),
    ):
        post = p._client.generate_presigned_post(
            Bucket=p.bucket,
            Key=key,
            Fields={"Content-Type": content_type},
            Conditions=[{"Content-Type": content_type}, ["content-length-range", 0, max_bytes]],
            ExpiresIn=expires,
        )
    return str(post["url"]), dict(post["fields"])


@pytest.mark.parametrize("config", CONFIGS, ids=[f"{c[0]}-{c[1]}-{c[3]}-{c[2]}" for c in CONFIGS])
@pytest.mark.parametrize(
    "key",
    ["0f8c-report.pdf", "uuid-résumé 2024 (final) #1 100%.txt", 'uuid-"quoted"\\back.txt', "uuid-😀.png"],
)
@pytest.mark.parametrize("content_type", ["text/plain", 'a/b;  x="y z"', "image/svg+xml"])
def test_presigned_posts_match_botocore_byte_for_byte(
    config: tuple[str, str, str | None, str, str], key: str, content_type: str
) -> None:
    p = provider(*config)
    for max_bytes, expires in ((1, 1), (5 * 1024**3, 300), (10**12, 604800)):
        expected = botocore_post(p, key, content_type, max_bytes, expires)
        found = p.presign_post(key, content_type, max_bytes, expires, now=NOW)
        assert found == expected
        assert list(found[1]) == list(expected[1])  # the form's field order too


@settings(max_examples=200, deadline=None)
@given(
    key=st.text(min_size=1, max_size=60).filter(lambda k: "\x00" not in k and not k.endswith("${filename}")),
    content_type=st.from_regex(
        r"[a-z]{1,8}/[a-z0-9.+-]{1,12}(; ?[a-z]{1,5}=[a-z0-9-]{1,6})?", fullmatch=True
    ),
    max_bytes=st.integers(min_value=0, max_value=5 * 1024**4),
    config=st.sampled_from(CONFIGS),
)
def test_presigned_posts_match_botocore_for_any_key(
    key: str, content_type: str, max_bytes: int, config: tuple[str, str, str | None, str, str]
) -> None:
    p = provider(*config)
    assert p.presign_post(key, content_type, max_bytes, 300, now=NOW) == botocore_post(
        p, key, content_type, max_bytes, 300
    )


def test_a_post_policy_binds_the_exact_key_even_one_ending_in_the_filename_placeholder() -> None:
    # botocore turns such a key into ["starts-with", "$key", prefix]: any name under the prefix.
    p = provider(*CONFIGS[0])
    key = "0123abcd-${filename}"
    _, fields = p.presign_post(key, "text/plain", 100, 300, now=NOW)
    policy = json.loads(base64.b64decode(fields["policy"]))
    assert {"key": key} in policy["conditions"]
    assert not any(isinstance(c, list) and c[:2] == ["starts-with", "$key"] for c in policy["conditions"])

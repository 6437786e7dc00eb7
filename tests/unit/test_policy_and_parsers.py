"""What a presign may ask for, and how bodies are read: each refusal and its message, no app needed."""

from __future__ import annotations

from typing import Any

import pytest

from app.errors import ApiError, BadRequest, PayloadTooLarge, UnsupportedMediaType
from app.storage import Checksums
from app.uploads.policy import UploadPolicy
from app.uploads.schemas import (
    MAX_BATCH_PARTS,
    MAX_FILE_NAME_LENGTH,
    parse_part_numbers,
    parse_presign,
    parse_save,
)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"contentType": "text/plain"}, "fileName is required"),
        ({"fileName": 7, "contentType": "text/plain"}, "fileName must be a string"),
        ({"fileName": "  ", "contentType": "text/plain"}, "fileName must not be empty"),
        (
            {"fileName": "x" * (MAX_FILE_NAME_LENGTH + 1), "contentType": "text/plain"},
            f"fileName is too long (at most {MAX_FILE_NAME_LENGTH} characters)",
        ),
        ({"fileName": "../", "contentType": "text/plain"}, "fileName has nothing left once path parts"),
        ({"fileName": "a.txt", "contentType": "text"}, "contentType is not a valid media type"),
        ({"fileName": "a.txt", "contentType": "text/plain", "fileSize": "5"}, "fileSize must be a whole"),
        ({"fileName": "a.txt", "contentType": "text/plain", "fileSize": True}, "fileSize must be a whole"),
        ({"fileName": "a.txt", "contentType": "text/plain", "fileSize": -1}, "fileSize must not be negative"),
        (
            {"fileName": "a.txt", "contentType": "text/plain", "singlePut": "yes"},
            "singlePut must be true or false",
        ),
    ],
)
def test_a_malformed_presign_body_is_refused_naming_the_field(body: dict[str, Any], message: str) -> None:
    with pytest.raises(BadRequest, match=message.replace("(", r"\(").replace(")", r"\)")) as refused:
        parse_presign(body)
    assert refused.value.status == 400


def test_a_file_name_keeps_only_its_last_path_part() -> None:
    assert parse_presign({"fileName": "../../etc/passwd", "contentType": "text/plain"}).file_name == "passwd"


def test_save_takes_the_first_key_field_present_and_names_them_all_when_none_is() -> None:
    assert parse_save({"blobName": "k"}, ("objectKey", "blobName")).field == "blobName"
    with pytest.raises(BadRequest, match="objectKey or blobName is required"):
        parse_save({}, ("objectKey", "blobName"))
    with pytest.raises(BadRequest, match="objectKey contains control characters"):
        parse_save({"objectKey": "a\nb"}, ("objectKey",))


def test_a_batch_of_part_numbers_is_bounded() -> None:
    assert parse_part_numbers("1,2,3") == [1, 2, 3]
    too_many = ",".join(str(n) for n in range(1, MAX_BATCH_PARTS + 2))
    with pytest.raises(BadRequest, match=f"partNumbers names at most {MAX_BATCH_PARTS} parts at once"):
        parse_part_numbers(too_many)


@pytest.mark.parametrize(
    ("policy", "content_type", "size", "public", "refusal", "message"),
    [
        (UploadPolicy(100), "text/plain", 101, False, PayloadTooLarge, "fileSize 101 is over the 100 byte"),
        (UploadPolicy(100, ("image/*",)), "text/plain", 1, False, UnsupportedMediaType, "allowed: image/\\*"),
        (UploadPolicy(100, ("image/*",)), "image/svg+xml", 1, False, UnsupportedMediaType, "list it exactly"),
        (UploadPolicy(100), "text/html", 1, True, UnsupportedMediaType, "not allowed on a public bucket"),
    ],
)
def test_presign_refuses_what_could_never_be_saved(
    policy: UploadPolicy, content_type: str, size: int, public: bool, refusal: type[ApiError], message: str
) -> None:
    with pytest.raises(refusal, match=message):
        policy.check_presign(content_type, size, 10**9, public=public)


def test_an_active_type_listed_exactly_is_allowed_even_where_a_pattern_is_not_enough() -> None:
    policy = UploadPolicy(100, ("image/*", "image/svg+xml"))
    policy.check_presign("image/svg+xml", 1, 10**9)
    assert policy.allows_type("image/png")
    assert not UploadPolicy(100, ("image/*",)).allows_type("image/svg+xml")


def test_the_stored_object_is_judged_on_its_own() -> None:
    policy = UploadPolicy(100)
    too_big = policy.problem_with_stored(size=101, content_type="text/plain")
    assert isinstance(too_big, PayloadTooLarge) and "it was deleted" in too_big.message
    assert policy.problem_with_stored(size=100, content_type="text/plain") is None


MD5 = "CY9rzUYh03PK3k6DJie09g=="


def test_checksums_are_read_in_canonical_base64() -> None:
    assert parse_presign(
        {"fileName": "a", "contentType": "text/plain", "contentMD5": f" {MD5} "}
    ).checksums == (Checksums(md5=MD5))
    assert not parse_presign({"fileName": "a", "contentType": "text/plain", "contentMD5": None}).checksums
    # The same 16 bytes with stray bits in the last character: not what a header may carry as signed.
    with pytest.raises(BadRequest, match="contentMD5 must be the base64 of the file's 16-byte MD5 digest"):
        parse_presign({"fileName": "a", "contentType": "text/plain", "contentMD5": MD5[:21] + "h=="})
    with pytest.raises(BadRequest, match="contentMD5 must be the base64"):
        parse_presign({"fileName": "a", "contentType": "text/plain", "contentMD5": MD5.rstrip("=")})

"""Object keys: the client's file name, cleaned, and the tags that say whose a key is."""

from __future__ import annotations

import re

import pytest

from app.storage import NO_CHECKSUMS, Checksums
from app.uploads.keys import MAX_NAME_BYTES, KeySigner, clean_file_name


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("photo.png", "photo.png"),
        ("../../etc/passwd", "passwd"),
        ("..\\..\\windows\\system.ini", "system.ini"),
        ("C:\\Users\\me\\report.pdf", "report.pdf"),
        ("a\x00b\x1fc\x7f.txt", "abc.txt"),
        ("  spaced name.txt  ", "spaced name.txt"),
        ("évil\u202egnp.exe", "évilgnp.exe"),
        ("e\u0301te\u0301.txt", "été.txt"),
        ("日本語のファイル.txt", "日本語のファイル.txt"),
        ("..", ""),
        (".", ""),
        ("a/", ""),
        ("\x01\x02", ""),
        (".env", ".env"),
        ("report.", "report"),
        ("notes . . ", "notes"),
        ("...", ""),
        ("\u00a0name.txt\u00a0", "name.txt"),
        ("\u3000\u200bname.txt\u2009\ufeff", "name.txt"),
        ("name .\u00a0.", "name"),
    ],
)
def test_clean_file_name(raw: str, clean: str) -> None:
    assert clean_file_name(raw) == clean


def test_clean_file_name_cuts_to_200_bytes_keeping_the_extension() -> None:
    cleaned = clean_file_name("é" * 300 + ".pdf")
    assert len(cleaned.encode("utf-8")) <= MAX_NAME_BYTES
    assert cleaned.endswith(".pdf")
    assert set(cleaned[:-4]) == {"é"}


def test_clean_file_name_never_splits_a_character() -> None:
    cleaned = clean_file_name("😀" * 100)
    assert len(cleaned.encode("utf-8")) == MAX_NAME_BYTES
    cleaned.encode("utf-8").decode("utf-8")


@pytest.mark.parametrize("space", ["\u00a0", "\u2002", "\u3000", "\u200b", " "])
def test_a_name_cut_to_the_limit_never_ends_in_a_space_or_dot(space: str) -> None:
    # The cut falls right after the space: clients strip such characters, so
    # a key ending in one could never be sent back exactly as issued.
    stem = "a" * (MAX_NAME_BYTES - len(space.encode("utf-8")))
    cleaned = clean_file_name(stem + space + "bbbb")
    assert cleaned == stem


SIGNER = KeySigner(b"k" * 32)


def test_issued_key_is_forty_hex_digits_dash_name_and_fresh_each_time() -> None:
    key = SIGNER.issue("s3", "alice", "a.txt", "text/plain", 5)
    assert re.fullmatch(r"[0-9a-f]{40}-a\.txt", key)
    assert SIGNER.issue("s3", "alice", "a.txt", "text/plain", 5) != key
    assert SIGNER.is_tagged(key)


def test_issued_key_belongs_to_its_user_and_provider_only() -> None:
    key = SIGNER.issue("r2", "alice", "photo.png", "image/png", None)
    assert SIGNER.issued_to(key, "r2", "alice")
    assert not SIGNER.issued_to(key, "r2", "alice2")
    assert not SIGNER.issued_to(key, "s3", "alice")
    assert not KeySigner(b"x" * 32).issued_to(key, "r2", "alice")


def test_any_change_to_the_key_breaks_its_owner_tag() -> None:
    key = SIGNER.issue("s3", "alice", "a.txt", "text/plain", None)
    assert not SIGNER.issued_to(key[:-5] + "b.txt", "s3", "alice")
    flipped = ("0" if key[3] != "0" else "1").join((key[:3], key[4:]))
    assert not SIGNER.issued_to(flipped, "s3", "alice")


def test_user_ids_cannot_be_shifted_into_the_provider() -> None:
    # Length-prefixed fields: ("s3", "x\x00y") and ("s3\x00x", "y") differ.
    key = SIGNER.issue("s3", "x\x00y", "a.txt", "text/plain", None)
    assert not SIGNER.issued_to(key, "s3\x00x", "y")


def test_spec_tag_checks_type_and_declared_size() -> None:
    sized = SIGNER.issue("azure", "alice", "a.txt", "text/plain", 10)
    assert SIGNER.matches_presign(sized, "text/plain", 10)
    assert not SIGNER.matches_presign(sized, "text/plain", 11)
    assert not SIGNER.matches_presign(sized, "text/plain", 9)
    assert not SIGNER.matches_presign(sized, "text/html", 10)
    unsized = SIGNER.issue("azure", "alice", "a.txt", "text/plain", None)
    assert SIGNER.matches_presign(unsized, "text/plain", 123456)
    assert not SIGNER.matches_presign(unsized, "image/png", 123456)
    # Issued for any type (Uppy's signRequest names none): the allowlist decides at save.
    any_type = SIGNER.issue("s3", "alice", "a.txt", "", None)
    assert SIGNER.matches_presign(any_type, "text/html", 5)
    assert SIGNER.matches_presign(any_type, "image/png", 123456)
    any_type_sized = SIGNER.issue("s3", "alice", "a.txt", "", 10)
    assert SIGNER.matches_presign(any_type_sized, "image/png", 10)
    assert not SIGNER.matches_presign(any_type_sized, "image/png", 11)


SHA = "n4bQgYhMfWWaL+qgxVrQFaO/TxsrC4Is0V1sFbDwCgg="
MD5 = "CY9rzUYh03PK3k6DJie09g=="


def test_spec_tag_binds_declared_checksums_and_says_which_were_declared() -> None:
    both = SIGNER.issue("s3", "alice", "a.txt", "text/plain", 10, Checksums(SHA, MD5))
    assert SIGNER.declared_checksums(both, "text/plain", 10, Checksums(SHA, MD5)) == Checksums(SHA, MD5)
    # An object that reports other checksums, or fewer, is not what was presigned.
    assert SIGNER.declared_checksums(both, "text/plain", 10, Checksums(SHA, None)) is None
    assert SIGNER.declared_checksums(both, "text/plain", 10, Checksums(SHA, "X" + MD5[1:])) is None
    assert SIGNER.declared_checksums(both, "text/plain", 10) is None
    assert SIGNER.declared_checksums(both, "text/html", 10, Checksums(SHA, MD5)) is None
    only_md5 = SIGNER.issue("azure", "alice", "a.txt", "", None, Checksums(md5=MD5))
    assert SIGNER.declared_checksums(only_md5, "image/png", 7, Checksums(md5=MD5)) == Checksums(md5=MD5)
    assert SIGNER.declared_checksums(only_md5, "image/png", 7, Checksums(SHA, MD5)) == Checksums(md5=MD5)
    assert SIGNER.declared_checksums(only_md5, "image/png", 7, Checksums(md5=SHA[:24])) is None


def test_a_checksum_an_object_reports_that_no_presign_declared_is_not_taken_as_declared() -> None:
    plain = SIGNER.issue("s3", "alice", "a.txt", "text/plain", 10)
    assert SIGNER.declared_checksums(plain, "text/plain", 10, Checksums(SHA, MD5)) == NO_CHECKSUMS
    assert SIGNER.declared_checksums(plain, "text/plain", 10) == NO_CHECKSUMS
    assert SIGNER.declared_checksums(plain, "text/plain", 11, Checksums(SHA)) is None


@pytest.mark.parametrize(
    "key", ["", "a.txt", "3f8e2c1a-0b5c-4d2e-9f1a-2b3c4d5e6f70-a.txt", "0" * 40, "0" * 40 + "-"]
)
def test_keys_in_other_forms_are_untagged_and_owned_by_nobody(key: str) -> None:
    assert not SIGNER.is_tagged(key)
    assert not SIGNER.issued_to(key, "s3", "alice")
    assert not SIGNER.matches_presign(key, "text/plain", 1)


def test_a_short_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 32 bytes"):
        KeySigner(b"short")

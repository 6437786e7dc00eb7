"""Object keys: the client's file name, cleaned."""

from __future__ import annotations

import re

import pytest

from app.uploads.keys import MAX_NAME_BYTES, clean_file_name, new_object_key


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


def test_new_object_key_is_uuid4_dash_name() -> None:
    key = new_object_key("a.txt")
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}-a\.txt", key)
    assert new_object_key("a.txt") != key

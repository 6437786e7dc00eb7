"""What save-metadata makes of an upload's first 4 KiB: real files of common formats, and disguised ones."""

from __future__ import annotations

import os
import random

import pytest

from app.uploads.content import content_problem, identify
from app.uploads.policy import UploadPolicy
from tests import corpus

ANY = UploadPolicy(10**9, ())
IMAGES = UploadPolicy(10**9, ("image/*",))

REAL = [
    ("png", corpus.png(), "image/png", "image/png"),
    ("jpeg", corpus.jpeg(), "image/jpeg", "image/jpeg"),
    ("jpeg spelled jpg", corpus.jpeg(), "image/jpg", "image/jpeg"),
    ("gif", corpus.gif(), "image/gif", "image/gif"),
    ("pdf", corpus.pdf(), "application/pdf", "application/pdf"),
    ("zip", corpus.zip_archive(), "application/zip", "application/zip"),
    ("zip as octet-stream", corpus.zip_archive(), "application/octet-stream", "application/zip"),
    ("text", corpus.TEXT, "text/plain", None),
    ("csv", corpus.CSV, "text/csv", None),
    ("csv as text", corpus.CSV, "text/plain", None),
    ("json", b'{"a": [1, 2, 3]}', "application/json", None),
    ("html as html", corpus.HTML, "text/html", "text/html"),
    ("svg as svg", corpus.SVG, "image/svg+xml", "image/svg+xml"),
    ("random bytes", os.urandom(4096), "application/octet-stream", None),
    ("empty", b"", "image/png", None),
]


@pytest.mark.parametrize(("name", "data", "declared", "detected"), REAL, ids=[r[0] for r in REAL])
def test_real_files_are_kept_with_what_their_bytes_are(
    name: str, data: bytes, declared: str, detected: str | None
) -> None:
    assert content_problem(data[:4096], declared, ANY, public=False) == (detected, None)


ACTIVE = "content browsers run, but it was declared"
DISGUISED = [
    ("html as png", corpus.HTML, "image/png", "text/html", f"bytes are text/html, {ACTIVE} image/png"),
    ("svg as png", corpus.SVG, "image/png", "image/svg+xml", f"bytes are image/svg+xml, {ACTIVE} image/png"),
    ("html with a bom and spaces", b"\xef\xbb\xbf  \n<HTML><BODY>x", "image/png", "text/html", ACTIVE),
    ("a bare script tag", b"<script>alert(document.cookie)</script>", "text/plain", "text/html", ACTIVE),
    ("a body with a handler", b"<body onload=alert(1)>hello", "text/plain", "text/html", ACTIVE),
    ("html as octet-stream", corpus.HTML, "application/octet-stream", "text/html", ACTIVE),
    ("pe as pdf", corpus.pe_executable(), "application/pdf", "application/vnd.microsoft.portable-executable",
     "not the application/pdf it was declared as"),
    ("elf as png", corpus.elf_executable(), "image/png", "application/x-executable",
     "not the image/png it was declared as"),
    ("zip as pdf", corpus.zip_archive(), "application/pdf", "application/zip", "not the application/pdf"),
    ("a png signature then html", b"\x89PNG\r\n\x1a\n<html><script>alert(1)</script></html>", "image/png",
     None, "bytes are not image/png, the type it was declared as"),
    ("text as png", corpus.TEXT, "image/png", None, "bytes are not image/png"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "data", "declared", "detected", "message"), DISGUISED, ids=[d[0] for d in DISGUISED]
)
def test_disguised_files_are_refused_naming_what_the_bytes_are(
    name: str, data: bytes, declared: str, detected: str | None, message: str
) -> None:
    found, problem = content_problem(data[:4096], declared, ANY, public=False)
    assert found == detected
    assert problem is not None and problem.status == 415
    assert message in problem.message and problem.message.endswith("; it was deleted")


def test_bytes_of_a_type_the_allowlist_refuses_are_refused_whatever_was_declared() -> None:
    detected, problem = content_problem(corpus.pdf(), "image/png", IMAGES, public=False)
    assert detected == "application/pdf"
    assert problem is not None and problem.message == (
        "the uploaded file's bytes are application/pdf, which is not allowed; it was deleted"
    )


def test_a_pattern_never_admits_active_bytes_even_declared_as_themselves() -> None:
    # image/* admits pictures, not SVG's scripts: the bytes are checked as the declared type is.
    _, problem = content_problem(corpus.SVG, "image/svg+xml", IMAGES, public=False)
    assert problem is not None and "image/svg+xml, which is not allowed" in problem.message


def test_identification_needs_only_the_first_4_kib() -> None:
    big_png = corpus.png(2000, 2000)
    assert len(big_png) > 4096
    assert identify(big_png[:4096]) == "image/png"


def test_unknown_binaries_are_never_refused_for_what_libmagic_weakly_guesses() -> None:
    # libmagic's weak guesses (a DOS .COM program, zlib, MPEG frames, TGA) match about one
    # random buffer in 70; such bytes count as unnamed, so an unknown format is kept.
    rng = random.Random(15)  # fixed: the same buffers every run
    refused = []
    for _ in range(3000):
        data = rng.randbytes(4096)
        detected, problem = content_problem(data, "application/x-custom-format", ANY, public=False)
        if problem is not None:
            refused.append((detected, data[:8]))
    assert refused == []

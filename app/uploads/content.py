"""What an upload's bytes are, from their first 4 KiB, and whether they may be recorded as declared.

The stored ``Content-Type`` is whatever the client sent: an HTML page can be
uploaded as ``image/png``. save-metadata reads the start of the object (one
ranged GET, ``read_start``) and names it here. Text is checked for markup a
browser would run (WHATWG MIME Sniffing's HTML patterns, SVG, XML) and for the
formats whose start is text (PDF); binary goes to libmagic (python-magic),
chosen over puremagic and filetype by a comparison on a corpus of real
formats (the README, "What the bytes are"), and trusted only for formats with
a long, fixed signature.

Rules (the README's table): bytes of a type the allowlist refuses are refused;
content browsers run declared as an inert type is refused; a known type the
declared one contradicts is refused, and so are bytes declared as a format
that can always be named (PNG, JPEG, PDF, ZIP, ...) that cannot be; other
bytes nobody can name (plain text, CSV, an unknown binary) are never refused
for that alone.
"""

from __future__ import annotations

import re
import threading

import magic

from ..errors import UnsupportedMediaType
from .policy import UploadPolicy, is_active_type, media_essence

# What libmagic says when it cannot name the bytes, or names only "some text".
UNIDENTIFIED = frozenset(
    {
        "",
        "application/octet-stream",
        "application/x-empty",
        "inode/x-empty",
        "text/plain",
    }
)

# Formats libmagic names from a long, fixed signature: what it says of these
# can be trusted. Its weaker guesses (a DOS .COM program, zlib, MPEG audio
# frames, TGA, HP-GL...) match about one random 4 KiB buffer in 70, so they
# count as unnamed: an unknown binary must never be refused as one of them.
STRONG_FORMATS = frozenset(
    {
        "image/png",
        "image/jpeg",
        "image/gif",
        "image/webp",
        "image/bmp",
        "image/tiff",
        "image/heic",
        "image/heif",
        "image/avif",
        "image/vnd.microsoft.icon",
        "application/pdf",
        "application/postscript",
        "application/zip",
        "application/gzip",
        "application/x-bzip2",
        "application/x-xz",
        "application/zstd",
        "application/x-7z-compressed",
        "application/x-rar",
        "application/vnd.rar",
        "application/x-tar",
        "application/x-sqlite3",
        "application/x-ole-storage",
        "application/msword",
        "application/vnd.ms-excel",
        "application/vnd.ms-powerpoint",
        "application/x-msi",
        "application/vnd.microsoft.portable-executable",
        "application/x-executable",
        "application/x-mach-binary",
        "application/java-vm",
        "application/wasm",
        "audio/x-wav",
        "audio/wav",
        "audio/flac",
        "audio/ogg",
        "video/ogg",
        "video/mp4",
        "video/quicktime",
        "video/webm",
        "video/x-matroska",
        "video/x-msvideo",
        "font/woff",
        "font/woff2",
    }
)

# Declared types that say nothing about the bytes: any inert content fits them.
GENERIC = frozenset({"", "application/octet-stream", "binary/octet-stream", "application/unknown"})

# Formats whose every valid file libmagic names from its first bytes: declared
# as one of these, bytes it cannot name are not that format (a PNG signature
# followed by HTML is "data", not a PNG).
SIGNATURE_FORMATS = frozenset(
    {
        "image/png",
        "image/jpeg",
        "image/gif",
        "image/webp",
        "image/bmp",
        "image/tiff",
        "application/pdf",
        "application/zip",
        "application/gzip",
    }
)

# Spellings of one format that libmagic and clients disagree on.
_ALIASES = {
    "image/jpg": "image/jpeg",
    "image/pjpeg": "image/jpeg",
    "image/x-png": "image/png",
    "image/x-ms-bmp": "image/bmp",
    "image/x-bmp": "image/bmp",
    "application/x-pdf": "application/pdf",
    "application/x-zip-compressed": "application/zip",
    "application/x-zip": "application/zip",
    "application/x-gzip": "application/gzip",
    "audio/mp3": "audio/mpeg",
    "audio/x-wav": "audio/wav",
    "audio/wave": "audio/wav",
    "audio/vnd.wave": "audio/wav",
    "text/xml": "application/xml",
    "application/x-javascript": "text/javascript",
    "application/javascript": "text/javascript",
    "application/x-msdownload": "application/vnd.microsoft.portable-executable",
    "application/x-sharedlib": "application/x-executable",
    "application/x-pie-executable": "application/x-executable",
}

# Formats stored inside a ZIP: libmagic may name the container or the format.
_ZIP_BASED = re.compile(
    r"application/(zip|java-archive|epub\+zip|vnd\.android\.package-archive|"
    r"vnd\.openxmlformats-officedocument\..+|vnd\.oasis\.opendocument\..+|vnd\.ms-.+\.macroenabled\..+)"
)

# What a browser renders as a document that can run script, at the start of
# text (WHATWG MIME Sniffing's HTML patterns, after a BOM and white space).
_MARKUP = re.compile(
    rb"\A(?:\xef\xbb\xbf)?[\t\n\x0c\r ]*"
    rb"<(?:!doctype\s+html|html|head|body|script|iframe|frame|frameset|object|embed|img|svg|style|"
    rb"title|meta|link|base|form|a|b|br|div|font|h1|p|table|!--|\?xml|!doctype\s+svg)[\s>/!-]",
    re.IGNORECASE,
)
_SVG = re.compile(rb"<svg[\s>/]", re.IGNORECASE)
_XML_PROLOG = re.compile(rb"\A(?:\xef\xbb\xbf)?[\t\n\x0c\r ]*<\?xml[\s?]", re.IGNORECASE)

# WHATWG MIME Sniffing's binary data bytes: text has none of them.
_BINARY_BYTES = bytes([*range(0x00, 0x09), 0x0B, *range(0x0E, 0x1B), *range(0x1C, 0x20)])
_TEXT_BYTES = bytes(b for b in range(256) if b not in _BINARY_BYTES)

_handle: magic.Magic | None = None
_handle_lock = threading.Lock()


def _magic() -> magic.Magic:
    # One libmagic handle per process (its database is about 8 MB): python-magic
    # locks around every call, and a binary's check takes about 20 µs.
    global _handle
    if _handle is None:
        with _handle_lock:
            if _handle is None:
                _handle = magic.Magic(mime=True)
    return _handle


def canonical(content_type: str) -> str:
    """Return one spelling of a media type's essence (``image/jpg`` → ``image/jpeg``)."""
    essence = media_essence(content_type)
    return _ALIASES.get(essence, essence)


# Formats whose start is text: their signature, as libmagic reads it.
_TEXT_SIGNATURES = (
    (b"%PDF-", "application/pdf"),
    (b"%!PS", "application/postscript"),
    (b"{\\rtf", "text/rtf"),
)
_HTML_TAG = re.compile(rb"<html[\s>]", re.IGNORECASE)


def _text_type(start: bytes) -> str | None:
    """What text is: a format whose start is text (PDF), markup a browser runs, or None."""
    for signature, kind in _TEXT_SIGNATURES:
        if start.startswith(signature):
            return kind
    if _XML_PROLOG.match(start):
        return "image/svg+xml" if _SVG.search(start) else "application/xml"
    if _MARKUP.match(start):
        return "image/svg+xml" if _SVG.search(start) and not _HTML_TAG.search(start) else "text/html"
    return None


def identify(start: bytes) -> str | None:
    """Return the media type the bytes are, or None when they cannot be named (text, unknown binary).

    Text (no binary data byte, as WHATWG MIME Sniffing defines them) is only
    checked for markup a browser would run: libmagic's text rules cost about
    0.5 ms a call and name nothing else that changes a decision. Binary goes
    to libmagic (about 20 µs).
    """
    if not start:
        return None
    if not start.translate(None, _TEXT_BYTES):
        return _text_type(start)
    detected = canonical(_magic().from_buffer(start))
    if detected in UNIDENTIFIED:
        return None
    trusted = (
        detected in STRONG_FORMATS
        or detected.startswith("text/")
        or is_active_type(detected)
        or _ZIP_BASED.fullmatch(detected) is not None
    )
    return detected if trusted else None


def _compatible(detected: str, declared: str) -> bool:
    if detected == declared:
        return True
    if declared in GENERIC:
        return not is_active_type(detected)
    if _ZIP_BASED.fullmatch(detected) and _ZIP_BASED.fullmatch(declared):
        return True
    # Text that libmagic names more finely (text/csv as text/x-...): the declared text type stands.
    return detected.startswith("text/") and declared.startswith("text/") and not is_active_type(detected)


def content_problem(
    start: bytes, declared: str | None, policy: UploadPolicy, *, public: bool
) -> tuple[str | None, UnsupportedMediaType | None]:
    """Return what the bytes are (None: unnamed) and why they may not be recorded as ``declared``, or None."""
    detected = identify(start)
    declared_type = canonical(declared or "")
    if detected is None:
        if start and declared_type in SIGNATURE_FORMATS:
            return None, UnsupportedMediaType(
                f"the uploaded file's bytes are not {declared_type}, the type it was declared as; "
                "it was deleted"
            )
        return None, None
    if is_active_type(detected) and not is_active_type(declared_type):
        return detected, UnsupportedMediaType(
            f"the uploaded file's bytes are {detected}, content browsers run, but it was declared "
            f"{declared_type or 'with no type'}; it was deleted"
        )
    if not policy.allows_type(detected, public=public):
        return detected, UnsupportedMediaType(
            f"the uploaded file's bytes are {detected}, which is not allowed; it was deleted"
        )
    if not _compatible(detected, declared_type):
        return detected, UnsupportedMediaType(
            f"the uploaded file's bytes are {detected}, not the {declared_type} it was declared as; "
            "it was deleted"
        )
    return detected, None

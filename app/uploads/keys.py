"""Object keys: ``<uuid4>-<cleaned file name>``, as the guides make them, but safe."""

from __future__ import annotations

import re
import unicodedata
import uuid

MAX_NAME_BYTES = 200

# Bidirectional overrides and isolates let "evil\u202egnp.exe" display as
# "evilexe.png"; they have no place in a file name.
_BIDI_CONTROLS = re.compile("[\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def clean_file_name(raw: str) -> str:
    """Reduce a client's file name to a safe last path part; '' when nothing is left.

    Unicode is kept (NFC), path parts and control characters are dropped,
    and the result is cut to at most 200 UTF-8 bytes, keeping the extension.
    """
    name = unicodedata.normalize("NFC", raw)
    name = "".join(ch for ch in name if unicodedata.category(ch) != "Cc")
    name = _BIDI_CONTROLS.sub("", name)
    # Windows and POSIX separators both count: "C:\\x\\a.txt" and "../../a.txt" -> "a.txt".
    name = re.split(r"[/\\]", name)[-1].strip()
    # Trailing dots and spaces are dropped by Windows and mishandled by Azure;
    # this also turns "." and ".." into nothing.
    name = name.rstrip(". ")
    return _truncate_utf8(name, MAX_NAME_BYTES)


def _truncate_utf8(name: str, limit: int) -> str:
    if len(name.encode("utf-8")) <= limit:
        return name
    stem, dot, ext = name.rpartition(".")
    # Keep a short extension ("report.pdf") so the type stays recognisable.
    if dot and stem and 0 < len(ext.encode("utf-8")) <= 16:
        suffix = "." + ext
        return _cut(stem, limit - len(suffix.encode("utf-8"))) + suffix
    return _cut(name, limit)


def _cut(text: str, limit: int) -> str:
    encoded = text.encode("utf-8")[:limit]
    # Drop a character split in half by the byte cut.
    return encoded.decode("utf-8", errors="ignore").rstrip(". ")


def new_object_key(clean_name: str) -> str:
    """Return a fresh key for an already cleaned file name."""
    return f"{uuid.uuid4()}-{clean_name}"

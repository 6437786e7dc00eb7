"""Object keys that say who they were issued to: ``<40 hex digits>-<cleaned file name>``.

The guides make keys as ``<uuid>-<file name>``. Ours replace the UUID with an
id that carries two truncated HMAC-SHA256 tags under a secret the service
keeps in its database (``service_secrets``):

- 10 random bytes, so keys never collide;
- a 6-byte *owner* tag over (provider, user, random bytes, file name): save-metadata
  proves a key was issued by this service to this caller for this provider
  by recomputing it, with no database read and no record that must already
  be written;
- a 4-byte *spec* tag over (random bytes, content type, declared size, and the
  declared checksums when there are any): what the presign allowed, so an
  upload the signature could not pin down (Azure SAS binds none of them) is
  checked against it, and the checksums an object reports are known to be
  the ones declared.

The same secret, keyed for another purpose, signs the URLs of the steps of
an upload in parts that the service answers itself (its create and complete
in Uppy's sign mode), so those URLs need no bearer token.

Keys in the guides' form (issued before these, or written by a guide's
code) carry no tags; the service falls back to its presign records for them.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import unicodedata
from collections.abc import Iterator
from itertools import product

from ..storage.base import NO_CHECKSUMS, Checksums

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
    name = _trim(re.split(r"[/\\]", name)[-1])
    return _truncate_utf8(name, MAX_NAME_BYTES)


def _is_edge_junk(ch: str) -> bool:
    # Any Unicode space (NBSP, U+2000..U+200A, U+3000) or invisible format
    # character: clients strip them, so a key ending in one could never be
    # sent back exactly as issued.
    return ch.isspace() or unicodedata.category(ch) in ("Zs", "Zl", "Zp", "Cf")


def _trim(name: str) -> str:
    """Drop spaces and invisible characters at both ends, and dots at the end.

    Trailing dots and spaces are dropped by Windows and mishandled by Azure;
    this also turns "." and ".." into nothing.
    """
    start, end = 0, len(name)
    while start < end and _is_edge_junk(name[start]):
        start += 1
    while end > start and (name[end - 1] == "." or _is_edge_junk(name[end - 1])):
        end -= 1
    return name[start:end]


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
    # Drop a character split in half by the byte cut, and whatever the cut
    # left at the end that _trim would have removed (a space, a dot).
    return _trim(encoded.decode("utf-8", errors="ignore"))


_NONCE_BYTES = 10
_OWNER_TAG_BYTES = 6
_SPEC_TAG_BYTES = 4
_TAGGED_KEY = re.compile(r"([0-9a-f]{20})([0-9a-f]{12})([0-9a-f]{8})-(.+)", re.DOTALL)


def _fields(*parts: str | bytes) -> bytes:
    """Length-prefix each part, so no two different tuples give the same bytes."""
    out = bytearray()
    for part in parts:
        data = part.encode("utf-8", "surrogatepass") if isinstance(part, str) else part
        out += len(data).to_bytes(4, "big") + data
    return bytes(out)


class KeySigner:
    """Issues and checks tagged object keys under one secret."""

    def __init__(self, secret: bytes):
        if len(secret) < 32:
            raise ValueError("the key-signing secret must be at least 32 bytes")
        # Keyed once: each tag then costs one copy and two hash blocks.
        self._owner = hmac.new(secret, b"object-key-owner-v1", hashlib.sha256)
        self._spec = hmac.new(secret, b"object-key-spec-v1", hashlib.sha256)
        self._step = hmac.new(secret, b"multipart-step-v1", hashlib.sha256)

    def _owner_tag(self, provider: str, user_id: str, nonce: bytes, name: str) -> bytes:
        mac = self._owner.copy()
        mac.update(_fields(provider, user_id, nonce, name))
        return mac.digest()[:_OWNER_TAG_BYTES]

    def _spec_tag(
        self, nonce: bytes, content_type: str, declared_size: int | None, checksums: Checksums
    ) -> bytes:
        mac = self._spec.copy()
        mac.update(_fields(nonce, content_type, "" if declared_size is None else str(declared_size)))
        if checksums:
            # Only then: keys issued before checksums existed keep their tags.
            mac.update(_fields("sha256", checksums.sha256 or "", "md5", checksums.md5 or ""))
        return mac.digest()[:_SPEC_TAG_BYTES]

    def issue(
        self,
        provider: str,
        user_id: str,
        clean_name: str,
        content_type: str,
        declared_size: int | None,
        checksums: Checksums = NO_CHECKSUMS,
    ) -> str:
        """Return a fresh key for ``user_id`` and an already cleaned, non-empty file name.

        ``content_type`` must already be normalized (``normalize_media_type``).
        """
        nonce = os.urandom(_NONCE_BYTES)
        owner = self._owner_tag(provider, user_id, nonce, clean_name)
        spec = self._spec_tag(nonce, content_type, declared_size, checksums)
        return f"{nonce.hex()}{owner.hex()}{spec.hex()}-{clean_name}"

    def step_signature(
        self, step: str, provider: str, user_id: str, key: str, upload_id: str, expires: int
    ) -> str:
        """Sign a step of an upload in parts that the service itself answers (a URL it hands out).

        ``expires`` is a Unix time; the signature binds every field, so a URL
        for one user, key, upload or step is worth nothing for another.
        """
        mac = self._step.copy()
        mac.update(_fields(step, provider, user_id, key, upload_id, str(expires)))
        return mac.hexdigest()[:32]

    def step_signed(
        self, signature: str, step: str, provider: str, user_id: str, key: str, upload_id: str, expires: int
    ) -> bool:
        """Say whether ``signature`` is this service's for the step (its expiry is checked apart)."""
        expected = self.step_signature(step, provider, user_id, key, upload_id, expires)
        return hmac.compare_digest(expected, signature)

    @staticmethod
    def is_tagged(key: str) -> bool:
        """Say whether ``key`` has this module's form (else it is in the guides' form)."""
        return _TAGGED_KEY.fullmatch(key) is not None

    def issued_to(self, key: str, provider: str, user_id: str) -> bool:
        """Say whether this service issued ``key`` to ``user_id`` for ``provider``."""
        match = _TAGGED_KEY.fullmatch(key)
        if match is None:
            return False
        nonce, owner, _, name = match.groups()
        expected = self._owner_tag(provider, user_id, bytes.fromhex(nonce), name)
        return hmac.compare_digest(expected.hex(), owner)

    def matches_presign(
        self, key: str, content_type: str, size: int, reported: Checksums = NO_CHECKSUMS
    ) -> bool:
        """Say whether an uploaded object is what its presign allowed (``declared_checksums``)."""
        return self.declared_checksums(key, content_type, size, reported) is not None

    def declared_checksums(
        self, key: str, content_type: str, size: int, reported: Checksums = NO_CHECKSUMS
    ) -> Checksums | None:
        """Say what an uploaded object's presign declared, or ``None`` when the object is not what it allowed.

        ``content_type`` is the stored object's type, normalized; ``reported``
        the checksums the object carries. The object matches when the presign
        was for this type, or for any type (issued with ``""``), for exactly
        ``size`` bytes or an undeclared size, and declared checksums the
        object reports (or none). The answer is the checksums declared: those
        of ``reported`` a presign signed, never one it did not.
        """
        match = _TAGGED_KEY.fullmatch(key)
        if match is None:
            return None
        nonce, spec = bytes.fromhex(match.group(1)), match.group(3)
        for declared_checksums, presigned_type, declared in product(
            _declarable(reported), (content_type, ""), (size, None)
        ):
            tag = self._spec_tag(nonce, presigned_type, declared, declared_checksums)
            if hmac.compare_digest(tag.hex(), spec):
                return declared_checksums
        return None


def _declarable(reported: Checksums) -> Iterator[Checksums]:
    """Each set of checksums a presign may have declared for an object reporting ``reported``."""
    shas = (reported.sha256, None) if reported.sha256 else (None,)
    md5s = (reported.md5, None) if reported.md5 else (None,)
    for sha256, md5 in product(shas, md5s):
        yield Checksums(sha256, md5)

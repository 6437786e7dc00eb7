"""What may be uploaded: a size limit and a content-type allowlist, for every provider."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import BadRequest, PayloadTooLarge, UnprocessableEntity, UnsupportedMediaType

# The request fields that declare each checksum (``Checksums.names``).
CHECKSUM_FIELDS = {"sha256": "checksumSHA256", "md5": "contentMD5"}


def media_essence(content_type: str) -> str:
    """Return ``type/subtype`` in lower case, without parameters."""
    return content_type.split(";", 1)[0].strip().lower()


# Types a browser runs, or renders as a document that can carry script, when
# served inline: HTML, SVG and other XML, JavaScript. Any "+xml" type counts,
# and so do the types browsers sniff for HTML (WHATWG MIME Sniffing: unknown/unknown,
# application/unknown, */*) and multipart/x-mixed-replace, whose parts render.
ACTIVE_TYPES = frozenset(
    {
        "unknown/unknown",
        "application/unknown",
        "*/*",
        "text/html",
        "application/xhtml+xml",
        "image/svg+xml",
        "text/xml",
        "application/xml",
        "text/xsl",
        "text/javascript",
        "application/javascript",
        "application/x-javascript",
        "application/ecmascript",
        "text/ecmascript",
    }
)


def is_active_type(content_type: str) -> bool:
    """Whether a browser would run ``content_type`` (or a document of it) served inline."""
    essence = media_essence(content_type)
    return essence in ACTIVE_TYPES or essence.endswith("+xml") or essence.startswith("multipart/")


def normalize_media_type(content_type: str) -> str:
    """Return a content type in one canonical spelling, for comparing two of them."""
    essence, _, params = content_type.partition(";")
    parts = [essence.strip().lower()]
    for param in params.split(";"):
        name, _, value = param.strip().partition("=")
        if name:
            parts.append(f"{name.strip().lower()}={value.strip()}")
    return ";".join(parts)


@dataclass(frozen=True)
class UploadPolicy:
    """Limits that hold whichever provider stores the bytes."""

    max_bytes: int
    #: patterns such as "image/*" or "application/pdf"; empty allows any type
    allowed_types: tuple[str, ...] = ()
    #: every upload must declare a checksum the provider checks (``REQUIRE_CHECKSUMS``)
    require_checksums: bool = False

    def check_checksums(
        self,
        declared: tuple[str, ...],
        *,
        provider: str,
        verified: frozenset[str],
        one_per_request: bool,
        in_parts: bool,
    ) -> None:
        """Refuse checksums ``provider`` would not check for this upload, rather than pretend to.

        ``declared`` names the algorithms sent (``Checksums.names``); ``verified``
        those the provider checks an upload in one request against.
        """
        usable = " or ".join(CHECKSUM_FIELDS[name] for name in sorted(verified, reverse=True))
        if not declared:
            if not self.require_checksums:
                return
            if in_parts:
                raise BadRequest(
                    "uploads in parts are refused here: this service requires a checksum of every file "
                    "(REQUIRE_CHECKSUMS), and no provider checks one for an upload in parts; presign the "
                    f"file as one upload with {usable}"
                )
            raise BadRequest(
                f"a checksum of the file is required (REQUIRE_CHECKSUMS): send {usable}, "
                f"the base64 of its digest, which {provider} checks the upload against"
            )
        fields = " and ".join(CHECKSUM_FIELDS[name] for name in declared)
        if in_parts:
            raise BadRequest(
                f"{fields} cannot be checked for an upload in parts ({provider} checks parts one by one, "
                "never the whole file against one digest); presign the file as one upload, "
                "or leave the checksum out"
            )
        for name in declared:
            if name not in verified:
                raise BadRequest(
                    f"{CHECKSUM_FIELDS[name]} cannot be checked by {provider}, which checks only {usable}; "
                    f"send that instead, or no checksum"
                )
        if one_per_request and len(declared) > 1:
            raise BadRequest(
                f"{provider} refuses an upload that carries two checksums: send checksumSHA256 "
                "or contentMD5, not both"
            )

    def allows_type(self, content_type: str, *, public: bool = False) -> bool:
        """Return whether ``content_type`` may be stored (``public``: in a bucket anyone can read)."""
        return self._type_refusal(media_essence(content_type), public) is None

    def _type_refusal(self, essence: str, public: bool) -> str | None:
        """Why ``essence`` may not be stored, as the end of a sentence; None when it may."""
        allowed = ", ".join(self.allowed_types)
        major = essence.split("/", 1)[0]
        matches_pattern = any(p in ("*/*", f"{major}/*") for p in self.allowed_types)
        if is_active_type(essence):
            # A type browsers run is admitted only by name: "image/*" means
            # pictures, not SVG's scripts. A public bucket serves objects
            # inline at their plain URL, so there even "any type" excludes them.
            if essence in self.allowed_types or (not self.allowed_types and not public):
                return None
            if not self.allowed_types:
                return (
                    "is not allowed on a public bucket, where browsers would run it; "
                    "list it exactly in ALLOWED_CONTENT_TYPES to accept it"
                )
            if matches_pattern:
                return (
                    f"is not allowed; allowed: {allowed} (a pattern never admits a type browsers run, "
                    "such as HTML, SVG or JavaScript: list it exactly)"
                )
            return f"is not allowed; allowed: {allowed}"
        if not self.allowed_types or matches_pattern or essence in self.allowed_types:
            return None
        return f"is not allowed; allowed: {allowed}"

    def limit_for(self, provider_limit: int) -> int:
        """Return the most one upload may carry to a provider whose own limit is ``provider_limit``."""
        return min(self.max_bytes, provider_limit)

    def check_presign(
        self, content_type: str, declared_size: int | None, provider_limit: int, *, public: bool = False
    ) -> None:
        """Refuse, before signing, what could never be accepted."""
        limit = self.limit_for(provider_limit)
        if declared_size is not None and declared_size > limit:
            raise PayloadTooLarge(f"fileSize {declared_size} is over the {limit} byte upload limit")
        # No type named (Uppy's signRequest): the stored type is checked at save.
        if content_type:
            essence = media_essence(content_type)
            refusal = self._type_refusal(essence, public)
            if refusal is not None:
                raise UnsupportedMediaType(f"contentType {essence} {refusal}")

    def problem_with_stored(
        self, *, size: int, content_type: str | None, public: bool = False
    ) -> PayloadTooLarge | UnsupportedMediaType | None:
        """Return why no presign could have allowed this stored object, or None.

        Depends on the object alone, never on a presign record, so the same
        upload gets the same answer whenever its save comes.
        """
        if size > self.max_bytes:
            return PayloadTooLarge(
                f"the uploaded file is {size} bytes, over the {self.max_bytes} byte limit; it was deleted"
            )
        essence = media_essence(content_type or "")
        refusal = self._type_refusal(essence, public)
        if refusal is not None:
            return UnsupportedMediaType(
                f"the uploaded file's content type {essence or 'none'} {refusal}; it was deleted"
            )
        return None

    def problem_with_upload(
        self,
        *,
        size: int,
        content_type: str | None,
        declared_size: int | None,
        presigned_type: str,
        public: bool = False,
    ) -> PayloadTooLarge | UnsupportedMediaType | UnprocessableEntity | None:
        """Return why an uploaded object must be refused against its presign record, or None."""
        problem = self.problem_with_stored(size=size, content_type=content_type, public=public)
        if problem is not None:
            return problem
        if declared_size is not None and size > declared_size:
            return PayloadTooLarge(
                f"the uploaded file is {size} bytes, more than the {declared_size} declared; it was deleted"
            )
        if declared_size is not None and size < declared_size:
            # S3, R2 and B2 refuse this at PUT time (the length is signed); Azure cannot.
            return UnprocessableEntity(
                f"the uploaded file is {size} bytes, fewer than the {declared_size} declared; it was deleted"
            )
        if not presigned_type:
            return None  # presigned for any type (Uppy's signRequest sends none): the allowlist decides
        if content_type is None or normalize_media_type(content_type) != normalize_media_type(presigned_type):
            return UnsupportedMediaType(
                f"the uploaded file's content type {content_type or 'none'} is not the "
                f"{presigned_type} it was presigned for; it was deleted"
            )
        return None

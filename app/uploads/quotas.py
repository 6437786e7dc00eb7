"""Per-user quotas: which limit a presign or a save would break, said with the numbers.

The limits are checked in the database, under the user's own lock, by the
statement that makes the change (``repository/files.py``: ``RESERVE`` at
presign, the save statement at save), so two replicas or many threads can
never take a user past a limit, not even by one file. This module only words
the refusal: a limit on bytes is a 413 (this file is larger than what is
left), a limit on a count a 403; each names the limit and the usage.
"""

from __future__ import annotations

from ..config import QuotaLimits
from ..errors import ApiError, Forbidden, PayloadTooLarge
from ..repository import Usage


def presign_refusal(usage: Usage, limits: QuotaLimits, reserve: int) -> ApiError:
    """Why a presign reserving ``reserve`` bytes was refused (the first limit it breaks)."""
    if limits.bytes is not None and usage.bytes + usage.unsaved_bytes + reserve > limits.bytes:
        left = max(0, limits.bytes - usage.bytes - usage.unsaved_bytes)
        return PayloadTooLarge(
            f"storage quota exceeded: this file ({reserve} bytes) is larger than what is left of your "
            f"{limits.bytes} bytes ({usage.bytes} stored, {usage.unsaved_bytes} reserved by uploads not "
            f"yet saved: {left} left)"
        )
    if limits.files is not None and usage.files + usage.unsaved_uploads + 1 > limits.files:
        return Forbidden(
            f"file quota exceeded: at most {limits.files} files ({usage.files} stored, "
            f"{usage.unsaved_uploads} uploads not yet saved)"
        )
    if limits.unsaved_bytes is not None and usage.unsaved_bytes + reserve > limits.unsaved_bytes:
        left = max(0, limits.unsaved_bytes - usage.unsaved_bytes)
        return PayloadTooLarge(
            f"unsaved-upload quota exceeded: this file ({reserve} bytes) is larger than what is left of "
            f"your {limits.unsaved_bytes} bytes for uploads not yet saved ({usage.unsaved_bytes} reserved: "
            f"{left} left); save or abandon the uploads in flight"
        )
    return Forbidden(
        f"unsaved-upload quota exceeded: at most {limits.unsaved_uploads} uploads presigned and not yet "
        f"saved ({usage.unsaved_uploads} now); save or abandon the uploads in flight"
    )


def save_refusal(usage: Usage, limits: QuotaLimits, size: int) -> ApiError:
    """Why saving a file of ``size`` bytes was refused (its object is deleted)."""
    if limits.bytes is not None and usage.bytes + size > limits.bytes:
        left = max(0, limits.bytes - usage.bytes)
        return PayloadTooLarge(
            f"storage quota exceeded: this file ({size} bytes) is larger than what is left of your "
            f"{limits.bytes} bytes ({usage.bytes} stored: {left} left); it was deleted"
        )
    return Forbidden(
        f"file quota exceeded: at most {limits.files} files ({usage.files} stored); it was deleted"
    )

"""Who is calling.

Until token authentication lands, every caller is the guides' fixed user
``user_123``, or the id in an ``X-User-Id`` header (a development
convenience that lets tests and curl act as a second user).
"""

from __future__ import annotations

import re

from flask import request

from .errors import BadRequest

DEV_USER_ID = "user_123"
_USER_ID = re.compile(r"^[\x21-\x7e]{1,128}$")


def current_user_id() -> str:
    """Return the id of the user making this request."""
    header = request.headers.get("X-User-Id")
    if header is None:
        return DEV_USER_ID
    if not _USER_ID.match(header):
        raise BadRequest("X-User-Id must be 1 to 128 visible ASCII characters")
    return header

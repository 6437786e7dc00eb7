"""The providers against the emulators: HEAD of a missing object is None, deleting one is fine."""

from __future__ import annotations

import pytest
import requests
from flask import Flask

from app.components import get_provider


@pytest.mark.integration
def test_head_is_none_for_a_missing_object_and_delete_of_missing_is_fine(app: Flask) -> None:
    # Against SeaweedFS: HEAD goes through a presigned URL on urllib3, which moto cannot see.
    with app.app_context():
        provider = get_provider("s3")
    upload = provider.presign_upload("present.txt", "text/plain", 5, 60)
    assert requests.put(upload.url, data=b"12345", headers=upload.headers, timeout=10).ok
    assert provider.head("absent.txt") is None
    info = provider.head("present.txt")
    assert info is not None
    assert (info.size, info.content_type) == (5, "text/plain")
    assert info.etag and '"' not in info.etag
    provider.delete("absent.txt")
    provider.delete("present.txt")
    assert provider.head("present.txt") is None

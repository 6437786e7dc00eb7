"""What the write-once condition costs a presign, in process: ``python bench/write_once_micro.py``.

Signs the same S3 PUT with and without ``If-None-Match: *`` (``create_only``),
best of 15 runs of 5,000 each, interleaved; no server, no network. The wrk
run in ``python -m bench`` shows the same side by side over HTTP
(``write-once`` against ``ours``), where this difference is lost in the noise.
"""

from __future__ import annotations

import sys
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.config import load_settings
from app.storage import build_providers

ENV = {
    "DATABASE_URL": "postgresql://localhost/x",
    "AUTH_MODE": "dev",
    "APP_ENV": "test",
    "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE",
    "AWS_SECRET_ACCESS_KEY": "secret/key",
    "AWS_REGION": "us-east-1",
    "S3_BUCKET_NAME": "bucket",
}
KEY = "0123456789abcdef0123456789abcdef01234567-notes.txt"


def main() -> None:
    provider = build_providers(load_settings(ENV))["s3"]

    def plain() -> None:
        provider.presign_upload(KEY, "text/plain", 1234, 300)

    def create_only() -> None:
        provider.presign_upload(KEY, "text/plain", 1234, 300, create_only=True)

    for name, call in (("plain", plain), ("create_only", create_only)) * 2:
        best = min(timeit.repeat(call, number=5000, repeat=15)) / 5000 * 1e6
        print(f"{name:12} {best:.2f} µs per presign")


if __name__ == "__main__":
    main()

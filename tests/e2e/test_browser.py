"""The upload page in a real browser: Debian's Chromium, driven by Playwright, against the running service.

Each provider gets a small file and a 12 MiB one (S3 and R2: each in one PUT
with the SHA-256 the page computed, which is stored; B2 in parts; Azure in
blocks); both are listed, downloaded and compared byte for byte; one is
deleted; a file of a type the service refuses shows the service's message.
A screenshot of the page after the uploads is written to tests/artifacts/.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from werkzeug.serving import make_server

from tests.helpers import PROVIDERS
from tests.tokens import HS_SECRET, hs256

pytestmark = pytest.mark.integration

ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"
MiB = 1024**2
SMALL = b"hello from the browser\n"
LARGE = os.urandom(12 * MiB)
REFUSED_MESSAGE = (
    "blocked.exe: contentType application/x-msdownload is not allowed; "
    "allowed: text/*, application/octet-stream"
)


def sha256_base64(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def chromium_path() -> str:
    path = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.fail(
            "Chromium not found: install Debian's chromium (make install does, as root) or set CHROMIUM_PATH"
        )
    return path


def serve(app: Flask) -> Iterator[str]:
    """Serve ``app`` on a free port with bucket CORS set for it by `flask storage cors`; yield its URL."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    origin = f"http://127.0.0.1:{server.server_port}"
    cors = app.test_cli_runner().invoke(args=["storage", "cors", "--origin", origin])
    assert cors.exit_code == 0, cors.output
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield origin
    finally:
        server.shutdown()


@pytest.fixture
def served(make_app: Callable[..., Flask]) -> Iterator[str]:
    """The page in development mode (no login)."""
    yield from serve(
        make_app(
            UPLOAD_PAGE_MULTIPART_THRESHOLD_BYTES=str(5 * MiB),
            ALLOWED_CONTENT_TYPES="text/*,application/octet-stream",
        )
    )


@pytest.fixture
def served_with_tokens(make_app: Callable[..., Flask]) -> Iterator[str]:
    """The page where callers need a bearer token."""
    yield from serve(make_app(AUTH_MODE="jwt", AUTH_JWT_SECRET=HS_SECRET))


def test_upload_page_end_to_end_in_chromium(served: str) -> None:
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox"])
        context = browser.new_context(accept_downloads=True, viewport={"width": 1100, "height": 1400})
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(served)
        expect(page.get_by_role("heading", name="Upload files")).to_be_visible()
        expect(page.get_by_label("Storage")).to_have_value("s3")

        for provider in PROVIDERS:
            page.get_by_label("Storage").select_option(provider)
            small, large = f"{provider}-small.txt", f"{provider}-large.bin"
            page.locator(".uppy-Dashboard-input").first.set_input_files(
                [
                    {"name": small, "mimeType": "text/plain", "buffer": SMALL},
                    {"name": large, "mimeType": "application/octet-stream", "buffer": LARGE},
                ]
            )
            page.locator(".uppy-StatusBar-actionBtn--upload").click()
            messages = page.locator("#messages")
            expect(messages).to_contain_text(f"{small}: uploaded and saved", timeout=60_000)
            expect(messages).to_contain_text(f"{large}: uploaded and saved", timeout=60_000)

            rows = page.locator("#files tbody tr")
            expect(rows.filter(has_text=small)).to_have_count(1)
            expect(rows.filter(has_text=large)).to_have_count(1)
            for name, data in ((small, SMALL), (large, LARGE)):
                with page.expect_download() as download:
                    page.get_by_role("link", name=f"Download {name}").click()
                assert download.value.suggested_filename == name
                assert Path(download.value.path()).read_bytes() == data, f"{provider}: {name} differs"
            # S3 and R2 files up to 64 MiB went in one PUT with the SHA-256 the page computed.
            listed = page.evaluate(f"fetch('/{provider}/files').then((r) => r.json())")["files"]
            checksums = {f["fileName"]: f["checksumSHA256"] for f in listed}
            expected = {
                n: sha256_base64(d) if provider in ("s3", "r2") else None
                for n, d in ((small, SMALL), (large, LARGE))
            }
            assert checksums == expected, provider
            page.locator(".uppy-StatusBar-actionBtn--done").click()

        # A type the service refuses: its own message, on that file.
        page.get_by_label("Storage").select_option("r2")
        page.locator(".uppy-Dashboard-input").first.set_input_files(
            [{"name": "blocked.exe", "mimeType": "application/x-msdownload", "buffer": b"MZ"}]
        )
        page.locator(".uppy-StatusBar-actionBtn--upload").click()
        expect(page.locator("#messages")).to_contain_text(REFUSED_MESSAGE, timeout=30_000)

        # Delete one: gone from the list, and from the service.
        page.get_by_label("Storage").select_option("b2")
        delete = page.get_by_role("button", name="Delete b2-small.txt")
        delete.click()
        expect(page.locator("#files-status")).to_contain_text("Deleted b2-small.txt.")
        expect(page.locator("#files tbody tr").filter(has_text="b2-small.txt")).to_have_count(0)
        listed = page.evaluate("fetch('/b2/files').then((r) => r.json())")
        assert [f["fileName"] for f in listed["files"]] == ["b2-large.bin"]

        page.get_by_label("Storage").select_option("s3")
        expect(page.locator("#files tbody tr")).to_have_count(2)
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "upload-page.png"), full_page=True)
        assert errors == []
        browser.close()


def test_upload_page_works_on_a_phone_sized_screen_with_the_keyboard(served: str) -> None:
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 375, "height": 740}, is_mobile=True, has_touch=True)
        page.goto(served)
        # Nothing wider than the screen.
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 375
        # The provider choice is reachable and usable from the keyboard alone.
        page.keyboard.press("Tab")  # the skip link
        page.keyboard.press("Tab")
        focused = page.evaluate("document.activeElement.id")
        assert focused == "provider"
        page.keyboard.press("ArrowDown")
        expect(page.get_by_label("Storage")).to_have_value("r2")
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "upload-page-phone.png"), full_page=True)
        browser.close()


def test_upload_page_takes_a_pasted_token_and_keeps_it_in_the_tab_only(served_with_tokens: str) -> None:
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox"])
        context = browser.new_context()
        page = context.new_page()
        page.goto(served_with_tokens)
        expect(page.locator("#files-status")).to_contain_text("missing bearer token")
        page.get_by_label("Access token").fill(hs256("carol"))
        page.get_by_role("button", name="Use this token").click()
        expect(page.locator("#files-status")).to_contain_text("No files yet.")
        page.locator(".uppy-Dashboard-input").first.set_input_files(
            [{"name": "carol.txt", "mimeType": "text/plain", "buffer": b"carol's"}]
        )
        page.locator(".uppy-StatusBar-actionBtn--upload").click()
        expect(page.locator("#messages")).to_contain_text("carol.txt: uploaded and saved", timeout=30_000)
        expect(page.locator("#files tbody tr").filter(has_text="carol.txt")).to_have_count(1)

        page.reload()  # the same tab remembers it ...
        expect(page.locator("#files tbody tr").filter(has_text="carol.txt")).to_have_count(1)
        assert page.evaluate("localStorage.length") == 0
        other = context.new_page()  # ... another tab does not
        other.goto(served_with_tokens)
        expect(other.locator("#files-status")).to_contain_text("missing bearer token")
        browser.close()


# A page of Uppy's own, configured as Uppy 6's docs show for a Companion server,
# served from the service itself: its origin, and (for Chromium's local network
# access rules) a real loopback document.
COMPANION_PAGE = """<!doctype html><html lang="en"><body><div id="dashboard"></div>
<script type="module">
import { AwsS3, Dashboard, Uppy } from '/assets/uppy/uppy.min.mjs'
const uppy = new Uppy()
uppy.use(Dashboard, { target: '#dashboard', inline: true })
const provider = new URLSearchParams(location.search).get('provider')
const multipart = (file) => file.size > 5 * 1024 * 1024
uppy.use(AwsS3, { companionEndpoint: `${location.origin}/${provider}`, shouldUseMultipart: multipart })
window.uppy = uppy
</script></body></html>"""

UPLOAD_WITH_UPPY = """async ({ name, type, size }) => {
  const data = new Uint8Array(size)
  for (let i = 0; i < size; i++) data[i] = i % 251
  window.uppy.addFile({ name, type, data: new Blob([data], { type }) })
  const result = await window.uppy.upload()
  const done = result.successful.map((file) => file.response.body.key)
  const failed = result.failed.map((file) => String(file.error))
  window.uppy.clear()
  return { done, failed }
}"""


@pytest.fixture
def served_with_companion_page(make_app: Callable[..., Flask]) -> Iterator[str]:
    """The service, plus a test-only page using Uppy's Companion mode."""
    app = make_app()
    app.add_url_rule("/companion.html", "companion_page", lambda: COMPANION_PAGE)
    yield from serve(app)


def pattern(size: int) -> bytes:
    return bytes(i % 251 for i in range(size))


def upload_and_save_with_uppy_page(
    page_url: str, provider: str, files: list[tuple[str, str, int]]
) -> list[Any]:
    """Upload ``(name, type, size)`` files with the Uppy page at ``page_url``, save each, read it back."""
    import requests
    from playwright.sync_api import sync_playwright

    served = page_url.split("/", 3)
    base = "/".join(served[:3])
    saved_files = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox"])
        page = browser.new_page()
        page.goto(page_url)
        page.wait_for_function("window.uppy !== undefined")
        for name, content_type, size in files:
            outcome = page.evaluate(UPLOAD_WITH_UPPY, {"name": name, "type": content_type, "size": size})
            assert outcome["failed"] == [], outcome
            [key] = outcome["done"]
            saved = requests.post(f"{base}/{provider}/save-metadata", json={"objectKey": key}, timeout=30)
            assert saved.status_code == 201, saved.json()
            file = saved.json()["file"]
            assert file["size"] == size
            assert requests.get(file["downloadUrl"], timeout=60).content == pattern(size)
            saved_files.append(file)
        browser.close()
    return saved_files


@pytest.mark.parametrize(("provider", "sizes"), [("s3", (1000, 12 * MiB)), ("r2", (12 * MiB,))])
def test_uppy_6_companion_mode_uploads_through_the_companion_style_routes(
    served_with_companion_page: str, provider: str, sizes: tuple[int, ...]
) -> None:
    # S3's small file goes as a POST form (/s3/params); large ones in parts (/s3/multipart...).
    files = [(f"c{size}.bin", "application/octet-stream", size) for size in sizes]
    upload_and_save_with_uppy_page(
        f"{served_with_companion_page}/companion.html?provider={provider}", provider, files
    )


# Uppy 6's signRequest mode written as Uppy's own documentation writes it:
# Uppy's request object goes to the service as it is (no type, no size).
SIGN_REQUEST_PAGE = """<!doctype html><html lang="en"><body><div id="dashboard"></div>
<script type="module">
import { AwsS3, Dashboard, Uppy } from '/assets/uppy/uppy.min.mjs'
const uppy = new Uppy()
uppy.use(Dashboard, { target: '#dashboard', inline: true })
const provider = new URLSearchParams(location.search).get('provider')
uppy.use(AwsS3, {
  shouldUseMultipart: (file) => file.size > 5 * 1024 * 1024,
  async signRequest(request) {
    const response = await fetch(`/${provider}/s3/sign`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(request),
    })
    if (!response.ok) throw new Error('Unsuccessful request')
    return response.json()
  },
})
window.uppy = uppy
</script></body></html>"""


@pytest.fixture
def served_with_sign_request_page(make_app: Callable[..., Flask]) -> Iterator[str]:
    """The service, plus a test-only page using Uppy's signRequest mode unchanged."""
    app = make_app()
    app.add_url_rule("/sign-request.html", "sign_request_page", lambda: SIGN_REQUEST_PAGE)
    yield from serve(app)


@pytest.mark.parametrize("provider", ["s3", "r2", "b2"])
def test_uppy_6_sign_request_mode_unchanged_uploads_in_one_put_and_in_parts(
    served_with_sign_request_page: str, provider: str
) -> None:
    files = [("u1000.txt", "text/plain", 1000), ("u12m.bin", "application/octet-stream", 12 * MiB)]
    page = f"{served_with_sign_request_page}/sign-request.html?provider={provider}"
    saved = upload_and_save_with_uppy_page(page, provider, files)
    # The service picked the keys; the types are the files' own, as Uppy sent them.
    assert [(f["fileName"], f["contentType"]) for f in saved] == [(n, t) for n, t, _ in files]
    assert all(not f["objectKey"].startswith(f["fileName"]) for f in saved)


WRITE_ONCE_FROM_THE_PAGE = """async ({provider}) => {
  const json = {'Content-Type': 'application/json'}
  const presigned = await (await fetch(`/${provider}/presign-upload`, {method: 'POST', headers: json,
    body: JSON.stringify({fileName: 'w.txt', contentType: 'text/plain', fileSize: 5})})).json()
  const put = (body) => fetch(presigned.presignedUrl, {method: 'PUT', headers: presigned.headers, body})
  const first = await put('hello')
  const saved = await fetch(`/${provider}/save-metadata`, {method: 'POST', headers: json,
    body: JSON.stringify({objectKey: presigned.objectKey})})
  let again
  try {
    again = (await put('evil!')).status
  } catch (error) {
    again = String(error)
  }
  return {headers: presigned.headers, first: first.status, saved: saved.status, again}
}"""


@pytest.mark.parametrize("provider", ["s3", "r2"])
def test_a_browser_sends_the_write_once_header_through_bucket_cors_and_a_replay_is_refused(
    served: str, provider: str
) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox"])
        page = browser.new_page()
        page.goto(served)
        outcome = page.evaluate(WRITE_ONCE_FROM_THE_PAGE, {"provider": provider})
        browser.close()
    assert outcome["headers"] == {"Content-Type": "text/plain", "If-None-Match": "*"}
    # The preflight allowed If-None-Match (flask storage cors sets it), the PUT landed, the save took it ...
    assert (outcome["first"], outcome["saved"]) == (200, 201)
    # ... and the same URL, replayed from the page, is refused by the storage.
    assert outcome["again"] == 412

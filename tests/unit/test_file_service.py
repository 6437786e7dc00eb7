"""The saved-files service on its own: pages, lookups and deletes with in-memory fakes."""

from __future__ import annotations

import pytest

from app.errors import BadRequest, NotFound
from app.repository import NewFile
from app.storage import ObjectInfo, ProviderRegistry
from app.uploads.files import FileService
from tests.unit.fakes import FakeFiles, FakeStorage


@pytest.fixture
def files() -> FakeFiles:
    fakes = FakeFiles()
    for n in range(5):
        fakes.save_file("s3", NewFile(f"k{n}", f"u{n}", "alice", f"f{n}.png", "image/png", n, None))
    fakes.save_file("s3", NewFile("theirs", "u", "bob", "b.png", "image/png", 1, None))
    return fakes


@pytest.fixture
def s3() -> FakeStorage:
    return FakeStorage("s3")


@pytest.fixture
def service(files: FakeFiles, s3: FakeStorage) -> FileService:
    return FileService(files, ProviderRegistry({"s3": s3}, {}), 60)  # type: ignore[arg-type]


def test_pages_follow_each_other_newest_first_until_the_last(service: FileService, s3: FakeStorage) -> None:
    first = service.list_files(s3, "alice", 2, None)
    assert [f.object_key for f in first.files] == ["k4", "k3"] and first.next_cursor
    second = service.list_files(s3, "alice", 2, first.next_cursor)
    third = service.list_files(s3, "alice", 2, second.next_cursor)
    assert [f.object_key for f in second.files + third.files] == ["k2", "k1", "k0"]
    assert third.next_cursor is None


def test_a_cursor_this_service_did_not_issue_is_refused(service: FileService, s3: FakeStorage) -> None:
    with pytest.raises(
        BadRequest, match="cursor is not valid: pass nextCursor from the previous page unchanged"
    ):
        service.list_files(s3, "alice", 2, "not-a-cursor")


def test_another_users_file_is_404_like_one_that_never_existed(service: FileService, s3: FakeStorage) -> None:
    with pytest.raises(NotFound, match="no file 6 among your s3 files"):
        service.get_file(s3, "alice", "6")


def test_delete_removes_the_object_then_the_row_and_deleting_again_is_fine(
    service: FileService, files: FakeFiles, s3: FakeStorage
) -> None:
    s3.objects["k0"] = ObjectInfo(size=0, content_type="image/png", etag=None)
    service.delete_file(s3, "alice", "1")
    assert s3.deleted == ["k0"] and ("s3", "k0") not in files.files
    service.delete_file(s3, "alice", "1")
    assert s3.deleted == ["k0"]


def test_the_download_link_pins_the_recorded_type(service: FileService, files: FakeFiles) -> None:
    row = files.files[("s3", "k1")]
    assert service.download_url(row).endswith("type=image/png")

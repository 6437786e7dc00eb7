"""The upload service on its own: presign and save-metadata with in-memory fakes, no app and no servers."""

from __future__ import annotations

import pytest

from app.errors import (
    Conflict,
    Forbidden,
    Gone,
    NotFound,
    PayloadTooLarge,
    ServiceUnavailable,
    UnprocessableEntity,
)
from app.storage import Checksums, ObjectInfo, ProviderRegistry
from app.uploads.policy import UploadPolicy
from app.uploads.schemas import PresignRequest, SaveRequest
from app.uploads.service import UploadService
from tests.unit.fakes import FakeFiles, FakeRecorder, FakeStagingStorage, FakeStorage

LIMIT = 1000


@pytest.fixture
def files() -> FakeFiles:
    return FakeFiles()


@pytest.fixture
def storage() -> dict[str, FakeStorage]:
    return {"s3": FakeStorage("s3"), "azure": FakeStorage("azure")}


@pytest.fixture
def service(files: FakeFiles, storage: dict[str, FakeStorage]) -> UploadService:
    providers = ProviderRegistry(storage, {"r2": ("R2_ACCOUNT_ID", "R2_BUCKET_NAME")})
    return UploadService(files, UploadPolicy(LIMIT, ()), FakeRecorder(files), providers)  # type: ignore[arg-type]


def issue(service: UploadService, provider: FakeStorage, user: str = "alice", size: int | None = 5) -> str:
    wanted = PresignRequest("notes.txt", "text/plain", size)
    return service.issue_upload(provider, user, wanted, 300).object_key


def test_presign_queues_a_record_of_who_the_key_was_issued_to(
    service: UploadService, files: FakeFiles, storage: dict[str, FakeStorage]
) -> None:
    key = issue(service, storage["s3"])
    assert files.pending[key].user_id == "alice"
    assert files.pending[key].declared_size == 5
    assert key.endswith("-notes.txt")


def test_save_records_what_storage_holds_and_a_second_save_never_asks_storage_again(
    service: UploadService, files: FakeFiles, storage: dict[str, FakeStorage]
) -> None:
    s3 = storage["s3"]
    key = issue(service, s3)
    s3.objects[key] = ObjectInfo(size=5, content_type="text/plain", etag='"e"')
    row, created = service.save_upload("s3", "alice", SaveRequest(key, "objectKey"))
    assert created and (row.size_bytes, row.content_type, row.file_name) == (5, "text/plain", "notes.txt")
    again, created = service.save_upload("s3", "alice", SaveRequest(key, "objectKey"))
    assert again == row and not created
    assert s3.heads == [key]


def test_save_before_the_put_is_404_naming_the_key(
    service: UploadService, storage: dict[str, FakeStorage]
) -> None:
    key = issue(service, storage["s3"])
    with pytest.raises(
        NotFound, match=f"no object '{key}' in s3 storage: PUT the file to presignedUrl first"
    ):
        service.save_upload("s3", "alice", SaveRequest(key, "objectKey"))


def test_an_object_that_is_not_what_was_presigned_is_refused_and_deleted(
    service: UploadService, files: FakeFiles, storage: dict[str, FakeStorage]
) -> None:
    s3 = storage["s3"]
    key = issue(service, s3)
    s3.objects[key] = ObjectInfo(size=6, content_type="text/plain", etag='"e"')
    with pytest.raises(
        UnprocessableEntity,
        match=r"is not what objectKey was presigned for \(its type, size or checksum differs\); it was",
    ):
        service.save_upload("s3", "alice", SaveRequest(key, "objectKey"))
    assert s3.deleted == [key] and key in files.claimed and not files.files


def test_only_the_checksums_a_presign_declared_are_recorded(
    service: UploadService, files: FakeFiles, storage: dict[str, FakeStorage]
) -> None:
    s3 = storage["s3"]
    s3.verified_checksums = frozenset({"sha256", "md5"})
    sha, md5 = "n4bQgYhMfWWaL+qgxVrQFaO/TxsrC4Is0V1sFbDwCgg=", "CY9rzUYh03PK3k6DJie09g=="
    wanted = PresignRequest("notes.txt", "text/plain", 5, checksums=Checksums(md5=md5))
    key = service.issue_upload(s3, "alice", wanted, 300).object_key
    # The client added a SHA-256 of its own to the object: it was never declared, nor checked.
    s3.objects[key] = ObjectInfo(size=5, content_type="text/plain", etag='"e"', checksums=Checksums(sha, md5))
    row, created = service.save_upload("s3", "alice", SaveRequest(key, "objectKey"))
    assert created and (row.checksum_sha256, row.content_md5) == (None, md5)


def test_an_object_over_the_limit_is_refused_and_deleted(
    service: UploadService, storage: dict[str, FakeStorage]
) -> None:
    azure = storage["azure"]
    key = issue(service, azure, size=None)
    azure.objects[key] = ObjectInfo(size=LIMIT + 1, content_type="text/plain", etag=None)
    with pytest.raises(PayloadTooLarge, match=f"over the {LIMIT} byte limit; it was deleted"):
        service.save_upload("azure", "alice", SaveRequest(key, "blobName"))
    assert azure.deleted == [key]


def test_a_key_issued_to_someone_else_is_refused_without_asking_storage(
    service: UploadService, storage: dict[str, FakeStorage]
) -> None:
    key = issue(service, storage["s3"], user="alice")
    with pytest.raises(Forbidden, match="objectKey was not issued to this user"):
        service.save_upload("s3", "mallory", SaveRequest(key, "objectKey"))
    assert storage["s3"].heads == []


def test_a_key_saved_through_another_providers_route_is_told_where_it_belongs(
    service: UploadService, storage: dict[str, FakeStorage]
) -> None:
    key = issue(service, storage["s3"])
    with pytest.raises(Conflict, match="issued for provider 's3'; save it with /s3/save-metadata"):
        service.save_upload("azure", "alice", SaveRequest(key, "blobName"))


def test_the_guides_shared_save_finds_the_keys_own_provider(
    service: UploadService, storage: dict[str, FakeStorage]
) -> None:
    azure = storage["azure"]
    key = issue(service, azure)
    azure.objects[key] = ObjectInfo(size=5, content_type="text/plain", etag=None)
    row, created = service.save_upload(None, "alice", SaveRequest(key, "objectKey"))
    assert created and row.provider == "azure"


def test_a_disabled_provider_is_503_naming_its_variables(service: UploadService) -> None:
    with pytest.raises(
        ServiceUnavailable, match="provider 'r2' is not configured: set R2_ACCOUNT_ID, R2_BUCKET_NAME"
    ):
        service.save_upload("r2", "alice", SaveRequest("guide-style-key.txt", "objectKey"))


def test_an_upload_that_is_saved_or_cleaned_up_goes_no_further(
    service: UploadService, files: FakeFiles, storage: dict[str, FakeStorage]
) -> None:
    s3 = storage["s3"]
    saved, claimed, open_key = issue(service, s3), issue(service, s3), issue(service, s3)
    s3.objects[saved] = ObjectInfo(size=5, content_type="text/plain", etag=None)
    service.save_upload("s3", "alice", SaveRequest(saved, "objectKey"))
    files.claimed.add(claimed)
    service.check_open(s3, "alice", open_key)
    with pytest.raises(Conflict, match="key was saved already: its upload is final"):
        service.check_open(s3, "alice", saved)
    with pytest.raises(Gone, match="key's upload was cleaned up"):
        service.check_open(s3, "alice", claimed)
    with pytest.raises(Forbidden, match="key was not issued to this user"):
        service.check_open(s3, "mallory", open_key)
    # A saved file its owner deleted stays final.
    files.delete_file("s3", "alice", files.files[("s3", saved)].id)
    with pytest.raises(Conflict, match="key was saved already"):
        service.check_open(s3, "alice", saved)


def test_an_upload_in_one_request_is_held_to_what_one_request_takes(
    service: UploadService, storage: dict[str, FakeStorage]
) -> None:
    azure = storage["azure"]
    azure.max_single_upload_bytes, azure.max_one_request_bytes = 10**6, 100
    wanted = PresignRequest("big.bin", "application/octet-stream", 101)
    service.issue_upload(azure, "alice", wanted, 300)
    with pytest.raises(PayloadTooLarge, match="fileSize 101 is over the 100 byte upload limit"):
        service.issue_upload(azure, "alice", wanted, 300, in_one_request=True)


@pytest.fixture
def staging(files: FakeFiles) -> tuple[UploadService, FakeStagingStorage]:
    azure = FakeStagingStorage("azure")
    providers = ProviderRegistry({"azure": azure}, {})
    service = UploadService(files, UploadPolicy(LIMIT, ()), FakeRecorder(files), providers)  # type: ignore[arg-type]
    return service, azure


def test_a_staged_upload_is_checked_then_promoted_to_its_key(
    staging: tuple[UploadService, FakeStagingStorage],
) -> None:
    service, azure = staging
    key = issue(service, azure)
    azure.staged[key] = ObjectInfo(size=5, content_type="text/plain", etag="e", start=b"notes")
    row, created = service.save_upload("azure", "alice", SaveRequest(key, "blobName"))
    assert created and row.size_bytes == 5
    assert key in azure.objects and key not in azure.staged


def test_a_staged_upload_written_again_during_its_check_is_409_and_not_recorded(
    staging: tuple[UploadService, FakeStagingStorage], files: FakeFiles
) -> None:
    service, azure = staging
    key = issue(service, azure)
    azure.staged[key] = ObjectInfo(size=5, content_type="text/plain", etag="e", start=b"notes")
    azure.rewritten_after_check = True
    with pytest.raises(Conflict) as refused:
        service.save_upload("azure", "alice", SaveRequest(key, "blobName"))
    assert refused.value.status == 409
    assert refused.value.message == (
        "blobName's upload was written again while it was being checked; "
        "call save-metadata again once it is finished"
    )
    assert files.files == {} and key not in azure.objects

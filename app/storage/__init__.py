"""Storage providers: build one per configured bucket, once per process."""

from __future__ import annotations

from ..config import AzureSettings, ConfigError, Settings
from ..proxies import UnusableProxy
from .base import (
    NO_CHECKSUMS,
    Checksums,
    CorsRule,
    ListedObject,
    MultipartProvider,
    ObjectInfo,
    PresignedUpload,
    StagingProvider,
    StorageError,
    StorageProvider,
    StorageRefused,
    StorageTimeout,
)
from .registry import ProviderRegistry

__all__ = [
    "NO_CHECKSUMS",
    "Checksums",
    "CorsRule",
    "ListedObject",
    "MultipartProvider",
    "ObjectInfo",
    "PresignedUpload",
    "ProviderRegistry",
    "StagingProvider",
    "StorageError",
    "StorageProvider",
    "StorageRefused",
    "StorageTimeout",
    "build_providers",
]


def build_providers(settings: Settings) -> ProviderRegistry:
    """Create one client per enabled provider; done once per process."""
    providers: dict[str, StorageProvider] = {}
    connect, read = settings.storage_connect_timeout_seconds, settings.storage_read_timeout_seconds
    attempts = settings.storage_max_attempts
    for name, provider_settings in settings.providers.items():
        if isinstance(provider_settings, AzureSettings):
            # Imported here so a process that uses only S3 never loads the Azure SDK.
            from .azure import AzureBlobProvider

            providers[name] = AzureBlobProvider(
                provider_settings, connect_timeout=connect, read_timeout=read, max_attempts=attempts
            )
        else:
            from .s3 import S3CompatibleProvider

            try:
                providers[name] = S3CompatibleProvider(
                    provider_settings,
                    connect_timeout=connect,
                    read_timeout=read,
                    max_attempts=attempts,
                    # One HTTP connection per server thread that may HEAD at once.
                    max_pool_connections=max(10, settings.db_pool_size),
                )
            except UnusableProxy as exc:
                raise ConfigError([f"{exc} ({name})"]) from None
    return ProviderRegistry(providers, settings.missing)

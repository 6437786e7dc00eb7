"""Storage providers: build one per configured bucket, look them up by name."""

from __future__ import annotations

from flask import Flask, current_app

from ..config import AzureSettings, ConfigError, Settings
from ..errors import ServiceUnavailable
from .base import (
    CorsRule,
    ListedObject,
    MultipartProvider,
    ObjectInfo,
    PresignedUpload,
    StorageError,
    StorageProvider,
    StorageRefused,
    StorageTimeout,
)
from .http import UnusableProxy

__all__ = [
    "CorsRule",
    "ListedObject",
    "MultipartProvider",
    "ObjectInfo",
    "PresignedUpload",
    "StorageError",
    "StorageProvider",
    "StorageRefused",
    "StorageTimeout",
    "build_providers",
    "get_provider",
    "init_app",
]


def build_providers(settings: Settings) -> dict[str, StorageProvider]:
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
    return providers


def get_provider(name: str) -> StorageProvider:
    """Return the enabled provider ``name``, or refuse with what is missing."""
    providers: dict[str, StorageProvider] = current_app.extensions["storage"]
    provider = providers.get(name)
    if provider is not None:
        return provider
    missing = current_app.extensions["settings"].missing
    names = ", ".join(missing.get(name, ())) or "its variables"
    raise ServiceUnavailable(f"provider {name!r} is not configured: set {names}")


def init_app(app: Flask, settings: Settings) -> None:
    """Build the app's providers."""
    app.extensions["storage"] = build_providers(settings)

"""The per-process parts ``create_app`` builds once, and how the web layer reaches them.

Services receive what they need as constructor arguments and never look
anything up; views, CLI commands and tests take the built parts from here.
"""

from __future__ import annotations

from flask import Flask, current_app

from .config import Settings
from .db import Database
from .maintenance.background import BackgroundSweeper
from .storage import ProviderRegistry, StorageProvider
from .uploads.files import FileService
from .uploads.multipart import MultipartService
from .uploads.service import UploadService


def settings(app: Flask | None = None) -> Settings:
    """The settings the app was built from."""
    return (app or current_app).extensions["settings"]  # type: ignore[no-any-return]


def get_database(app: Flask | None = None) -> Database:
    """The app's connection pool."""
    return (app or current_app).extensions["database"]  # type: ignore[no-any-return]


def providers(app: Flask | None = None) -> ProviderRegistry:
    """The app's storage providers."""
    return (app or current_app).extensions["storage"]  # type: ignore[no-any-return]


def get_provider(name: str, app: Flask | None = None) -> StorageProvider:
    """The enabled provider ``name``, or a 503 naming what it lacks."""
    return providers(app).require(name)


def uploads(app: Flask | None = None) -> UploadService:
    """The presign and save-metadata service."""
    return (app or current_app).extensions["uploads"]  # type: ignore[no-any-return]


def multipart(app: Flask | None = None) -> MultipartService:
    """The uploads-in-parts service."""
    return (app or current_app).extensions["multipart"]  # type: ignore[no-any-return]


def files(app: Flask | None = None) -> FileService:
    """The saved-files service."""
    return (app or current_app).extensions["files"]  # type: ignore[no-any-return]


def sweeper(app: Flask | None = None) -> BackgroundSweeper:
    """The thread that sweeps abandoned uploads in this process."""
    return (app or current_app).extensions["sweeper"]  # type: ignore[no-any-return]

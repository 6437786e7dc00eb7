"""The providers this process serves, built once at start-up and handed to whoever needs one."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from ..errors import ServiceUnavailable
from .base import StorageProvider


class ProviderRegistry(Mapping[str, StorageProvider]):
    """The enabled providers by name, and for the others the variables they lack.

    As a mapping it holds the enabled providers only; ``require`` is how a
    request asks for one, and refuses a disabled one with what to set.
    """

    def __init__(self, enabled: Mapping[str, StorageProvider], missing: Mapping[str, tuple[str, ...]]):
        self._enabled = dict(enabled)
        self._missing = dict(missing)

    def __getitem__(self, name: str) -> StorageProvider:
        return self._enabled[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._enabled)

    def __len__(self) -> int:
        return len(self._enabled)

    def missing(self, name: str) -> tuple[str, ...]:
        """The variables a disabled provider needs (empty for an enabled one)."""
        return self._missing.get(name, ())

    def require(self, name: str) -> StorageProvider:
        """Return the enabled provider ``name``, or refuse (503) naming what is missing."""
        provider = self._enabled.get(name)
        if provider is not None:
            return provider
        names = ", ".join(self.missing(name)) or "its variables"
        raise ServiceUnavailable(f"provider {name!r} is not configured: set {names}")

"""Start whatever the environment does not already provide, and say how to reach it."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from .services import (
    S3_IDENTITIES,
    Azurite,
    EmbeddedPostgres,
    SeaweedS3,
    find_azurite,
    free_port,
    kill_leftover,
)

log = logging.getLogger("devstack")

# A provider is left alone when the variable that names its bucket is set.
_CONFIGURED_BY = {
    "s3": "S3_BUCKET_NAME",
    "r2": "R2_BUCKET_NAME",
    "b2": "B2_BUCKET_NAME",
    "azure": "AZURE_STORAGE_CONNECTION_STRING",
}


@dataclass
class LocalStack:
    """The local services one run needs, under one data directory."""

    data_dir: Path
    s3_port: int | None = 8333
    azurite_port: int | None = 10000
    #: report objects stored as application/octet-stream as S3 does (see devstack/s3_types.py)
    exact_types: bool = True
    postgres: EmbeddedPostgres | None = None
    seaweed: SeaweedS3 | None = None
    azurite: Azurite | None = None
    notes: list[str] = field(default_factory=list)

    def start(self, env: dict[str, str]) -> dict[str, str]:
        """Start what ``env`` lacks; return the variables that point the service at it."""
        out: dict[str, str] = {}
        kill_leftover(self.data_dir / "seaweedfs", "weed")
        kill_leftover(self.data_dir / "seaweedfs", "s3-types")
        kill_leftover(self.data_dir / "azurite", "azurite")
        try:
            if not env.get("DATABASE_URL"):
                self.postgres = EmbeddedPostgres(self.data_dir / "postgres")
                out["DATABASE_URL"] = self.postgres.start()
                self.notes.append("database: embedded PostgreSQL (pgserver)")
            emulate_s3 = [i for i in S3_IDENTITIES if not env.get(_CONFIGURED_BY[i.provider])]
            if emulate_s3:
                port = free_port(self.s3_port, also_free=lambda p: [p + 10000])
                self.seaweed = SeaweedS3(
                    self.data_dir / "seaweedfs",
                    port=port,
                    identities=tuple(emulate_s3),
                    type_proxy=self.exact_types,
                )
                self.seaweed.start()
                for identity in emulate_s3:
                    out.update(self.s3_variables(identity.provider))
                names = ", ".join(i.provider for i in emulate_s3)
                self.notes.append(f"{names}: SeaweedFS at {self.seaweed.endpoint}")
            if not env.get(_CONFIGURED_BY["azure"]):
                if find_azurite() is None:
                    self.notes.append("azure: disabled (install Node.js and run npm ci for Azurite)")
                else:
                    port = free_port(self.azurite_port)
                    self.azurite = Azurite(self.data_dir / "azurite", port=port)
                    self.azurite.start()
                    out["AZURE_STORAGE_CONNECTION_STRING"] = self.azurite.connection_string
                    out["AZURE_STORAGE_CONTAINER_NAME"] = self.azurite.container
                    self.notes.append(f"azure: Azurite at {self.azurite.account_url}")
        except BaseException:
            self.stop()
            raise
        return out

    def emulated_providers(self) -> list[str]:
        """Return the providers this stack points at a local emulator."""
        names = [i.provider for i in self.seaweed.identities] if self.seaweed else []
        return [*names, "azure"] if self.azurite else names

    def s3_variables(self, provider: str) -> dict[str, str]:
        """Return the variables that point ``provider`` at SeaweedFS."""
        assert self.seaweed is not None
        identity = next(i for i in S3_IDENTITIES if i.provider == provider)
        endpoint = self.seaweed.endpoint
        if provider == "s3":
            return {
                "AWS_ACCESS_KEY_ID": identity.access_key,
                "AWS_SECRET_ACCESS_KEY": identity.secret_key,
                "AWS_REGION": "us-east-1",
                "S3_BUCKET_NAME": identity.bucket,
                "S3_ENDPOINT_URL": endpoint,
            }
        if provider == "r2":
            return {
                "R2_ACCOUNT_ID": "local",
                "R2_ACCESS_KEY_ID": identity.access_key,
                "R2_SECRET_ACCESS_KEY": identity.secret_key,
                "R2_BUCKET_NAME": identity.bucket,
                "R2_ENDPOINT_URL": endpoint,
            }
        return {
            "B2_APPLICATION_KEY_ID": identity.access_key,
            "B2_APPLICATION_KEY": identity.secret_key,
            "B2_BUCKET_NAME": identity.bucket,
            "B2_ENDPOINT_URL": endpoint,
            "B2_REGION": "us-west-004",
        }

    def stop(self) -> None:
        """Stop everything this stack started."""
        for service in (self.azurite, self.seaweed, self.postgres):
            if service is not None:
                try:
                    service.stop()
                except Exception:
                    log.exception("failed to stop %s", type(service).__name__)

"""docker-compose.yml's local environment is one the service accepts, with keys the emulator knows."""

from __future__ import annotations

import json

from dotenv import dotenv_values

from app.config import load_settings
from devstack.services import ROOT

COMPOSE_DIR = ROOT / "deploy" / "compose"


def test_compose_environment_enables_all_four_providers() -> None:
    env = {k: v for k, v in dotenv_values(COMPOSE_DIR / "local.env").items() if v is not None}
    settings = load_settings(env)
    assert sorted(settings.providers) == ["azure", "b2", "r2", "s3"]
    assert settings.auth.mode == "dev"


def test_compose_seaweedfs_identities_match_the_service_keys() -> None:
    env = dotenv_values(COMPOSE_DIR / "local.env")
    identities = json.loads((COMPOSE_DIR / "seaweedfs-identities.json").read_text())["identities"]
    pairs = {(c["accessKey"], c["secretKey"]) for i in identities for c in i["credentials"]}
    assert (env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]) in pairs
    assert (env["R2_ACCESS_KEY_ID"], env["R2_SECRET_ACCESS_KEY"]) in pairs
    assert (env["B2_APPLICATION_KEY_ID"], env["B2_APPLICATION_KEY"]) in pairs

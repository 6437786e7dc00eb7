"""docker-compose.yml: an environment the service accepts, keys the emulator knows, a proxy for replicas."""

from __future__ import annotations

import json
import re

import yaml
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


def test_compose_nginx_balances_exactly_the_replicas_and_their_metrics_ports_are_their_own() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    replicas = {name: s for name, s in compose["services"].items() if name.startswith("app-")}
    assert len(replicas) == 3
    ports = sorted(int(s["environment"]["PORT"]) for s in replicas.values())
    metrics_ports = sorted(int(s["environment"]["METRICS_PORT"]) for s in replicas.values())
    upstreams = sorted(
        int(p) for p in re.findall(r"server 127\.0\.0\.1:(\d+)", (COMPOSE_DIR / "nginx.conf").read_text())
    )
    assert upstreams == ports
    assert len(set(metrics_ports)) == 3 and not set(metrics_ports) & set(ports)
    # Each replica gets the shared definition: the stop grace outlasts GRACEFUL_TIMEOUT_SECONDS.
    assert {s["stop_grace_period"] for s in replicas.values()} == {"50s"}


def test_compose_replicas_reach_the_database_through_the_pooler_and_migrate_on_the_direct_url() -> None:
    env = {k: v for k, v in dotenv_values(COMPOSE_DIR / "local.env").items() if v is not None}
    settings = load_settings(env)
    pooler_port = re.search(r"listen_port = (\d+)", (COMPOSE_DIR / "pgbouncer.ini").read_text())
    assert pooler_port and f":{pooler_port.group(1)}/" in settings.database_url
    assert settings.database_url_unpooled and ":5432/" in settings.database_url_unpooled
    assert settings.rate_limit_storage_uri.startswith("redis://")

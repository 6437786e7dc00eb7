"""Bearer JWTs: every way a token can be wrong is a 401 that says which, never echoing the token."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import jwt
import pytest
from flask import Flask
from flask.testing import FlaskClient

from app.auth import VerifiedTokens
from app.config import ConfigError, load_settings
from devstack.services import ROOT
from tests.tokens import (
    AUDIENCE,
    HS_SECRET,
    ISSUER,
    JwksServer,
    KeyPair,
    bearer,
    claims,
    hs256,
    unsigned,
)

pytestmark = pytest.mark.integration

GOOD = {"fileName": "a.txt", "contentType": "text/plain"}


@pytest.fixture
def hs_client(make_app: Callable[..., Flask]) -> FlaskClient:
    """A client of an app that takes HS256 tokens with issuer and audience checks."""
    app = make_app(
        AUTH_MODE=None, AUTH_JWT_SECRET=HS_SECRET, AUTH_JWT_ISSUER=ISSUER, AUTH_JWT_AUDIENCE=AUDIENCE
    )
    return app.test_client()


@pytest.fixture
def rsa_key() -> KeyPair:
    return KeyPair("rsa-1", "RS256")


@pytest.fixture
def ec_key() -> KeyPair:
    return KeyPair("ec-1", "ES256")


@pytest.fixture
def jwks(rsa_key: KeyPair, ec_key: KeyPair) -> Iterator[JwksServer]:
    server = JwksServer()
    server.keys = [rsa_key.jwk, ec_key.jwk]
    with server.running():
        yield server


@pytest.fixture
def jwks_app(make_app: Callable[..., Flask], jwks: JwksServer) -> Flask:
    """An app that takes RS256/ES256 tokens whose keys it fetches from a JWKS URL."""
    return make_app(
        AUTH_MODE=None, AUTH_JWKS_URL=jwks.url, AUTH_JWT_ISSUER=ISSUER, AUTH_JWT_AUDIENCE=AUDIENCE
    )


def hmac_token(header: dict[str, Any], payload: dict[str, Any], key: bytes) -> str:
    """Build an HS256 token by hand (PyJWT rightly refuses to sign with a PEM key)."""

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    signature = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


def refused(response: Any, message: str) -> None:
    assert response.status_code == 401, response.get_json()
    assert response.headers["WWW-Authenticate"].startswith('Bearer realm="upload-service"')
    assert response.get_json() == {"success": False, "error": message}


def test_valid_hs256_token_is_accepted_and_names_the_user(hs_client: FlaskClient) -> None:
    response = hs_client.post("/s3/presign-upload", json=GOOD, headers=bearer(hs256("alice")))
    assert response.status_code == 200


def test_jwt_mode_ignores_the_dev_user_header(hs_client: FlaskClient) -> None:
    presigned = hs_client.post("/s3/presign-upload", json=GOOD, headers=bearer(hs256("alice"))).get_json()
    spoofed = {**bearer(hs256("mallory")), "X-User-Id": "alice"}
    response = hs_client.post(
        "/s3/save-metadata", json={"objectKey": presigned["objectKey"]}, headers=spoofed
    )
    assert response.status_code == 403
    # Without any token, the header alone gets nowhere either.
    refused(
        hs_client.post("/s3/presign-upload", json=GOOD, headers={"X-User-Id": "alice"}),
        "missing bearer token: send Authorization: Bearer <token>",
    )


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({}, "missing bearer token: send Authorization: Bearer <token>"),
        ({"Authorization": ""}, "missing bearer token: send Authorization: Bearer <token>"),
        ({"Authorization": "Basic YWxpY2U6cHc="}, "Authorization header must be 'Bearer <token>'"),
        ({"Authorization": "Bearer"}, "Authorization header must be 'Bearer <token>'"),
        ({"Authorization": "Bearer not-a-jwt"}, "token is malformed"),
        ({"Authorization": "Bearer a.b.c"}, "token is malformed"),
    ],
)
def test_missing_or_malformed_credentials_are_refused(
    hs_client: FlaskClient, headers: dict[str, str], message: str
) -> None:
    refused(hs_client.post("/s3/presign-upload", json=GOOD, headers=headers), message)


def test_missing_token_challenge_has_no_error_code(hs_client: FlaskClient) -> None:
    response = hs_client.post("/s3/presign-upload", json=GOOD)
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="upload-service"'


@pytest.mark.parametrize(
    ("token", "message"),
    [
        (lambda: hs256(exp=int(time.time()) - 120), "token has expired"),
        (lambda: hs256(nbf=int(time.time()) + 300), "token is not valid yet"),
        (lambda: hs256(secret="another-secret-that-is-also-long-enough"), "token signature is invalid"),
        (lambda: hs256(iss="https://evil.example/"), "token issuer is not accepted"),
        (lambda: hs256(aud="someone-else"), "token audience is not accepted"),
        (lambda: hs256(exp=None), "token has no exp claim"),
        (lambda: hs256(sub=None), "token has no usable sub claim"),
        (lambda: hs256(sub=""), "token has no usable sub claim"),
        (lambda: hs256(sub={"id": 1}), "token has no usable sub claim"),
        (unsigned, "token algorithm none is not accepted"),
    ],
)
def test_wrong_tokens_are_refused_saying_why(
    hs_client: FlaskClient, token: Callable[[], str], message: str
) -> None:
    value = token()
    response = hs_client.post("/s3/presign-upload", json=GOOD, headers=bearer(value))
    refused(response, message)
    assert value.encode() not in response.data


def test_small_clock_skew_is_tolerated(hs_client: FlaskClient) -> None:
    token = hs256(exp=int(time.time()) - 10, nbf=int(time.time()) + 10)
    assert hs_client.post("/s3/presign-upload", json=GOOD, headers=bearer(token)).status_code == 200


def test_user_claim_can_be_configured(make_app: Callable[..., Flask]) -> None:
    app = make_app(AUTH_MODE=None, AUTH_JWT_SECRET=HS_SECRET, AUTH_USER_CLAIM="user_id")
    client = app.test_client()
    ok = hs256("ignored", user_id="u-42")
    assert client.post("/s3/presign-upload", json=GOOD, headers=bearer(ok)).status_code == 200
    refused(
        client.post("/s3/presign-upload", json=GOOD, headers=bearer(hs256("alice"))),
        "token has no usable user_id claim",
    )


def test_rs256_and_es256_tokens_from_jwks_are_accepted(
    jwks_app: Flask, rsa_key: KeyPair, ec_key: KeyPair, jwks: JwksServer
) -> None:
    client = jwks_app.test_client()
    for key in (rsa_key, ec_key):
        response = client.post("/s3/presign-upload", json=GOOD, headers=bearer(key.sign("alice")))
        assert response.status_code == 200, response.get_json()
    assert jwks.fetches == 1  # fetched once, then cached


def test_hs256_token_where_rs256_is_expected_is_refused(jwks_app: Flask, rsa_key: KeyPair) -> None:
    client = jwks_app.test_client()
    refused(
        client.post("/s3/presign-upload", json=GOOD, headers=bearer(hs256())),
        "token algorithm HS256 is not accepted",
    )
    # The classic confusion attack: HMAC keyed with the public key's PEM.
    from cryptography.hazmat.primitives import serialization

    pem = rsa_key.private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    forged = hmac_token({"alg": "HS256", "typ": "JWT", "kid": "rsa-1"}, {"sub": "alice", "exp": 2**31}, pem)
    refused(
        client.post("/s3/presign-upload", json=GOOD, headers=bearer(forged)),
        "token algorithm HS256 is not accepted",
    )


def test_token_signed_by_a_key_not_in_the_jwks_is_refused(jwks_app: Flask, rsa_key: KeyPair) -> None:
    impostor = KeyPair("rsa-1", "RS256")  # same kid, different key
    refused(
        jwks_app.test_client().post("/s3/presign-upload", json=GOOD, headers=bearer(impostor.sign())),
        "token signature is invalid",
    )


def test_unknown_kid_refetches_the_jwks_at_most_once_a_minute(jwks_app: Flask, jwks: JwksServer) -> None:
    client = jwks_app.test_client()
    rotated = KeyPair("rsa-2", "RS256")
    for _ in range(3):
        refused(
            client.post("/s3/presign-upload", json=GOOD, headers=bearer(rotated.sign())),
            "token signing key is unknown",
        )
    assert jwks.fetches == 1
    # The provider rotates its keys; a minute later the new kid is looked up once.
    jwks.keys.append(rotated.jwk)
    jwks_app.extensions["authenticator"]._jwks._fetched_at -= 61
    assert client.post("/s3/presign-upload", json=GOOD, headers=bearer(rotated.sign())).status_code == 200
    assert jwks.fetches == 2


@pytest.mark.parametrize(
    ("published", "signer", "alg", "kid"),
    [
        ("rsa", "ec", "ES256", "rsa-1"),  # ES256 naming the RSA key
        ("rsa", "ec", "ES256", None),  # the only key, no kid
        ("ec", "rsa", "RS256", "ec-1"),  # RS256 naming the EC key
        ("ec", "rsa", "RS256", None),
    ],
)
def test_a_token_whose_algorithm_is_not_its_keys_is_a_401_and_is_counted(
    make_app: Callable[..., Flask],
    rsa_key: KeyPair,
    ec_key: KeyPair,
    published: str,
    signer: str,
    alg: str,
    kid: str | None,
) -> None:
    keys = {"rsa": rsa_key, "ec": ec_key}
    server = JwksServer()
    server.keys = [keys[published].jwk]
    headers = {"kid": kid} if kid else {}
    token = jwt.encode(claims("mallory"), keys[signer].private, algorithm=alg, headers=headers)
    with server.running():
        app = make_app(AUTH_MODE=None, AUTH_JWKS_URL=server.url, RATE_LIMIT_PRESIGN="2/minute")
        client = app.test_client()
        for _ in range(2):
            refused(
                client.post("/s3/presign-upload", json=GOOD, headers=bearer(token)),
                f"token algorithm {alg} does not match its signing key",
            )
        # Counted by address like any other bad token.
        assert client.post("/s3/presign-upload", json=GOOD, headers=bearer(token)).status_code == 429


def test_a_jwks_key_without_alg_takes_the_algorithm_its_type_implies(
    make_app: Callable[..., Flask], ec_key: KeyPair
) -> None:
    server = JwksServer()
    server.keys = [{k: v for k, v in ec_key.jwk.items() if k != "alg"}]
    with server.running():
        client = make_app(AUTH_MODE=None, AUTH_JWKS_URL=server.url).test_client()
        good = jwt.encode(claims("erin"), ec_key.private, algorithm="ES256", headers={"kid": ec_key.kid})
        assert client.post("/s3/presign-upload", json=GOOD, headers=bearer(good)).status_code == 200
        # PyJWT will not sign ES384 with a P-256 key; the header alone is what is checked first.
        _head, payload, signature = good.split(".")
        forged_head = base64.urlsafe_b64encode(
            json.dumps({"alg": "ES384", "kid": ec_key.kid, "typ": "JWT"}).encode()
        ).rstrip(b"=")
        other = f"{forged_head.decode()}.{payload}.{signature}"
        refused(
            client.post("/s3/presign-upload", json=GOOD, headers=bearer(other)),
            "token algorithm ES384 does not match its signing key",
        )


def test_an_unusable_key_in_the_jwks_does_not_stop_the_others(
    make_app: Callable[..., Flask], rsa_key: KeyPair
) -> None:
    server = JwksServer()
    # PyJWT raises NotImplementedError (not a JWT error) for alg "none".
    server.keys = [{**rsa_key.jwk, "kid": "broken", "alg": "none"}, {"kty": "weird"}, rsa_key.jwk]
    with server.running():
        client = make_app(AUTH_MODE=None, AUTH_JWKS_URL=server.url).test_client()
        good = jwt.encode(claims("erin"), rsa_key.private, algorithm="RS256", headers={"kid": rsa_key.kid})
        assert client.post("/s3/presign-upload", json=GOOD, headers=bearer(good)).status_code == 200
        broken = jwt.encode(claims("erin"), rsa_key.private, algorithm="RS256", headers={"kid": "broken"})
        refused(
            client.post("/s3/presign-upload", json=GOOD, headers=bearer(broken)),
            "token signing key is unknown",
        )


def test_a_symmetric_key_published_in_the_jwks_is_never_used(make_app: Callable[..., Flask]) -> None:
    server = JwksServer()
    secret = b"k" * 32
    server.keys = [
        {"kty": "oct", "kid": "shared", "k": base64.urlsafe_b64encode(secret).rstrip(b"=").decode()}
    ]
    token = hmac_token({"alg": "HS256", "kid": "shared"}, claims("mallory"), secret)
    with server.running():
        client = make_app(AUTH_MODE=None, AUTH_JWKS_URL=server.url).test_client()
        refused(
            client.post("/s3/presign-upload", json=GOOD, headers=bearer(token)),
            "token algorithm HS256 is not accepted",
        )


def test_jwks_unreachable_at_first_use_is_503(jwks_app: Flask, jwks: JwksServer, rsa_key: KeyPair) -> None:
    jwks.fail = True
    response = jwks_app.test_client().post("/s3/presign-upload", json=GOOD, headers=bearer(rsa_key.sign()))
    assert response.status_code == 503
    assert response.get_json()["error"] == "token signing keys are unavailable, try again shortly"


DB = {"DATABASE_URL": "postgresql://localhost/x"}


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        (
            {},
            "AUTH_MODE: no authentication configured: set AUTH_JWT_SECRET or AUTH_JWKS_URL, "
            "or AUTH_MODE=dev for a local run",
        ),
        (
            {"AUTH_MODE": "dev", "APP_ENV": "production"},
            "AUTH_MODE: dev mode trusts any caller and is accepted only with APP_ENV=development "
            "or APP_ENV=test (APP_ENV='production'); configure AUTH_JWT_SECRET or AUTH_JWKS_URL instead",
        ),
        (
            # What an image started without APP_ENV would have done: trust any X-User-Id.
            {"AUTH_MODE": "dev"},
            "AUTH_MODE: dev mode trusts any caller and is accepted only with APP_ENV=development "
            "or APP_ENV=test (APP_ENV is not set); configure AUTH_JWT_SECRET or AUTH_JWKS_URL instead",
        ),
        (
            {"AUTH_MODE": "dev", "APP_ENV": "prod"},
            "AUTH_MODE: dev mode trusts any caller and is accepted only with APP_ENV=development "
            "or APP_ENV=test (APP_ENV='prod'); configure AUTH_JWT_SECRET or AUTH_JWKS_URL instead",
        ),
        (
            {"AUTH_MODE": "jwt"},
            "AUTH_MODE: jwt needs AUTH_JWT_SECRET (HS256) or AUTH_JWKS_URL (RS256, ES256, EdDSA, ...)",
        ),
        ({"AUTH_JWT_SECRET": "short"}, "AUTH_JWT_SECRET: must be at least 32 bytes long"),
        ({"AUTH_MODE": "magic"}, "AUTH_MODE: must be dev or jwt, got 'magic'"),
    ],
)
def test_start_up_refuses_unsafe_authentication_settings(env: dict[str, str], problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({**DB, **env})
    assert problem in caught.value.problems


@pytest.mark.parametrize("app_env", ["development", "test", "Development"])
def test_dev_mode_is_accepted_on_a_development_or_test_machine(app_env: str) -> None:
    assert load_settings({**DB, "AUTH_MODE": "dev", "APP_ENV": app_env}).auth.mode == "dev"


def test_the_image_says_it_is_production() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "APP_ENV=production" in dockerfile
    # The compose file's local environment asks for dev mode explicitly.
    local_env = (ROOT / "deploy/compose/local.env").read_text().splitlines()
    assert "APP_ENV=development" in local_env and "AUTH_MODE=dev" in local_env


def test_secret_or_jwks_alone_selects_jwt_mode() -> None:
    assert load_settings({**DB, "AUTH_JWT_SECRET": HS_SECRET}).auth.mode == "jwt"
    assert load_settings({**DB, "AUTH_JWKS_URL": "https://x.example/jwks.json"}).auth.mode == "jwt"
    assert "jwt_secret" not in repr(load_settings({**DB, "AUTH_JWT_SECRET": HS_SECRET}))


# A verified token is remembered briefly, never past its exp.


def test_a_remembered_token_still_expires_on_time(make_app: Callable[..., Flask]) -> None:
    app = make_app(AUTH_MODE=None, AUTH_JWT_SECRET=HS_SECRET, AUTH_JWT_LEEWAY_SECONDS="0")
    client = app.test_client()
    token = hs256("alice", exp=int(time.time()) + 2)
    assert client.post("/s3/presign-upload", json=GOOD, headers=bearer(token)).status_code == 200
    assert client.post("/s3/presign-upload", json=GOOD, headers=bearer(token)).status_code == 200
    time.sleep(max(0.0, jwt_exp(token) - time.time()) + 0.2)
    refused(client.post("/s3/presign-upload", json=GOOD, headers=bearer(token)), "token has expired")


def test_a_remembered_token_is_checked_again_after_the_ttl() -> None:
    remembered = VerifiedTokens(ttl=0.2)
    remembered.add("t", "alice", expires_at=time.time() + 3600)
    assert remembered.get("t") == "alice"
    time.sleep(0.3)
    assert remembered.get("t") is None


def test_remembered_tokens_are_bounded_oldest_first() -> None:
    remembered = VerifiedTokens(max_entries=2)
    for n in range(3):
        remembered.add(f"t{n}", f"user{n}", expires_at=time.time() + 3600)
    assert [remembered.get(f"t{n}") for n in range(3)] == [None, "user1", "user2"]


def test_a_token_differing_by_one_character_is_verified_afresh(hs_client: FlaskClient) -> None:
    token = hs256("alice")
    assert hs_client.post("/s3/presign-upload", json=GOOD, headers=bearer(token)).status_code == 200
    head, payload, signature = token.split(".")
    tampered = f"{head}.{payload}.{signature[:-2]}{'A' if signature[-2] != 'A' else 'B'}{signature[-1]}"
    refused(
        hs_client.post("/s3/presign-upload", json=GOOD, headers=bearer(tampered)),
        "token signature is invalid",
    )


def jwt_exp(token: str) -> float:
    payload = token.split(".")[1]
    return float(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["exp"])


@pytest.mark.parametrize("sub", ["a\x00b", "\ud800lone"])
def test_a_user_id_the_database_cannot_store_is_refused(hs_client: FlaskClient, sub: str) -> None:
    # JSON allows NUL and lone surrogates in strings; PostgreSQL text does not.
    token = hmac_token(
        {"alg": "HS256", "typ": "JWT"},
        {"sub": sub, "exp": int(time.time()) + 600, "iss": ISSUER, "aud": AUDIENCE},
        HS_SECRET.encode(),
    )
    refused(
        hs_client.post("/s3/presign-upload", json=GOOD, headers=bearer(token)),
        "token has no usable sub claim",
    )

"""Who is calling: a verified bearer JWT, or the guides' fixed user in development mode.

HS256 tokens are checked with ``AUTH_JWT_SECRET``; asymmetric tokens (RS256,
ES256, EdDSA, ...) with keys from ``AUTH_JWKS_URL`` (Neon Auth, Auth0, Clerk
and Supabase all publish one). The algorithm a token names must be one this
configuration expects, which is what stops ``alg: none`` and HS256-for-RS256
confusion; and a JWKS key verifies only tokens of its own algorithm (the
key's ``alg``, else what its type and curve imply), so ES256 against an RSA
key is a refusal, not a crash inside the JWT library.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
import urllib.request
from typing import Any

import jwt
from flask import Flask, current_app, g, request

from .config import AuthSettings
from .errors import ApiError, BadRequest, ServiceUnavailable

log = logging.getLogger(__name__)

DEV_USER_ID = "user_123"
_DEV_USER_HEADER = re.compile(r"^[\x21-\x7e]{1,128}$")
MAX_USER_ID_LENGTH = 255


class Unauthorized(ApiError):
    """No valid credentials: 401 with the challenge RFC 6750 asks for."""

    status = 401

    def __init__(self, message: str, *, invalid_token: bool = True):
        challenge = 'Bearer realm="upload-service"'
        if invalid_token:
            challenge += ', error="invalid_token"'
        super().__init__(message, headers={"WWW-Authenticate": challenge})


class JwksCache:
    """Signing keys from a JWKS URL: fetched once, refetched for an unknown ``kid`` at most once a minute."""

    def __init__(self, url: str, *, timeout: float = 5.0, min_refresh_seconds: float = 60.0):
        self._url = url
        self._timeout = timeout
        self._min_refresh = min_refresh_seconds
        self._lock = threading.Lock()
        self._keys: dict[str | None, jwt.PyJWK] | None = None
        self._fetched_at = float("-inf")
        self.fetch_count = 0

    def _fetch(self) -> dict[str | None, jwt.PyJWK]:
        self.fetch_count += 1
        req = urllib.request.Request(self._url, headers={"Accept": "application/json"})  # noqa: S310 - https URL from config
        with urllib.request.urlopen(req, timeout=self._timeout) as response:  # noqa: S310
            document = json.loads(response.read(1024 * 1024))
        keys: dict[str | None, jwt.PyJWK] = {}
        for entry in document.get("keys", []) if isinstance(document, dict) else ():
            if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
                continue
            try:
                key = jwt.PyJWK(entry)
            except Exception as exc:  # noqa: BLE001 - PyJWT raises NotImplementedError for alg "none", ...
                # A key we cannot use must not stop the others from working.
                log.warning("JWKS: skipping an unusable key (%s)", type(exc).__name__)
                continue
            # A published symmetric key would let anyone who reads the JWKS sign.
            if key.algorithm_name in JWKS_ALGORITHMS:
                keys[entry.get("kid")] = key
        return keys

    def key_for(self, kid: str | None) -> jwt.PyJWK:
        """Return the key ``kid`` names (or the only key, when the token names none)."""
        keys = self._keys
        if keys is None or kid not in keys:
            keys = self._refresh_if_allowed(kid)
        if kid is None and len(keys) == 1:
            return next(iter(keys.values()))
        if kid not in keys:
            raise Unauthorized("token signing key is unknown")
        return keys[kid]

    def _refresh_if_allowed(self, kid: str | None) -> dict[str | None, jwt.PyJWK]:
        with self._lock:
            keys = self._keys
            if keys is not None and kid in keys:
                return keys
            if time.monotonic() - self._fetched_at < self._min_refresh:
                if keys is None:
                    raise ServiceUnavailable("token signing keys are unavailable, try again shortly")
                return keys
            self._fetched_at = time.monotonic()
            try:
                self._keys = self._fetch()
            except (OSError, ValueError) as exc:
                log.warning("fetching JWKS failed: %s", type(exc).__name__)
                if keys is None:
                    raise ServiceUnavailable(
                        "token signing keys are unavailable, try again shortly"
                    ) from None
                return keys
            return self._keys


# Signature algorithms a JWKS key may carry (RFC 7518, RFC 8037); never HS*, never none.
JWKS_ALGORITHMS = frozenset(
    ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
)

# PyJWT's exceptions -> what the client is told (never the token itself).
_TOKEN_ERRORS: tuple[tuple[type[jwt.PyJWTError], str], ...] = (
    (jwt.ExpiredSignatureError, "token has expired"),
    (jwt.ImmatureSignatureError, "token is not valid yet"),
    (jwt.InvalidSignatureError, "token signature is invalid"),
    (jwt.InvalidIssuerError, "token issuer is not accepted"),
    (jwt.InvalidAudienceError, "token audience is not accepted"),
    (jwt.InvalidAlgorithmError, "token algorithm is not accepted"),
    (jwt.exceptions.InvalidSubjectError, "token has no usable sub claim"),
    (jwt.DecodeError, "token is malformed"),
)


def _storable(user_id: str) -> bool:
    """Whether PostgreSQL can store ``user_id``: no NUL, no lone surrogates (JSON allows both)."""
    if "\x00" in user_id:
        return False
    try:
        user_id.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class VerifiedTokens:
    """Tokens already verified in this process, so a client's next request skips the crypto.

    A browser sends the same bearer token on every request until it expires;
    verifying it costs ~40 µs (two base64 passes, an HMAC or an RSA check),
    most of an upload route's own time. An entry is trusted until the
    token's ``exp`` or for ``ttl`` seconds, whichever is sooner, so a key
    removed from the JWKS stops working within ``ttl``. Bounded: the oldest
    entries go first.
    """

    def __init__(self, max_entries: int = 4096, ttl: float = 60.0):
        self._max_entries = max_entries
        self._ttl = ttl
        self._entries: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def get(self, token: str) -> str | None:
        """Return the user of a token verified recently and not yet expired."""
        entry = self._entries.get(token)
        if entry is None or entry[1] <= time.time():
            return None
        return entry[0]

    def add(self, token: str, user_id: str, expires_at: float) -> None:
        """Remember a token that just passed verification."""
        trusted_until = min(expires_at, time.time() + self._ttl)
        with self._lock:
            if token not in self._entries and len(self._entries) >= self._max_entries:
                # Insertion order: the first key is the oldest.
                del self._entries[next(iter(self._entries))]
            self._entries[token] = (user_id, trusted_until)


class Authenticator:
    """Turns an ``Authorization`` header into a user id, or refuses."""

    def __init__(self, settings: AuthSettings):
        self.settings = settings
        algorithms: dict[str, Any] = {}
        if settings.jwt_secret:
            algorithms["HS256"] = settings.jwt_secret
        self._jwks = JwksCache(settings.jwks_url) if settings.jwks_url else None
        if self._jwks:
            # The key decides which of these a token may use (see _verify).
            algorithms.update(dict.fromkeys(JWKS_ALGORITHMS))
        self._algorithms = algorithms
        self._verified = VerifiedTokens()

    def user_for_token(self, token: str) -> str:
        """Verify ``token`` (or find it verified moments ago) and return its user id."""
        user = self._verified.get(token)
        if user is not None:
            return user
        user, expires_at = self._verify(token)
        self._verified.add(token, user, expires_at)
        return user

    def _verify(self, token: str) -> tuple[str, float]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise Unauthorized("token is malformed") from None
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self._algorithms:
            shown = alg if isinstance(alg, str) and len(alg) <= 10 else "?"
            raise Unauthorized(f"token algorithm {shown} is not accepted")
        key = self._algorithms[alg]
        if key is None:
            assert self._jwks is not None
            kid = header.get("kid")
            jwk = self._jwks.key_for(kid if isinstance(kid, str) else None)
            if jwk.algorithm_name != alg:
                # Checked before PyJWT sees the key: an RSA key handed to the
                # ES256 verifier raises TypeError there, not a JWT error.
                raise Unauthorized(f"token algorithm {alg} does not match its signing key")
            key = jwk.key
        settings = self.settings
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=settings.audience,
                issuer=settings.issuer,
                leeway=settings.leeway_seconds,
                options={"require": ["exp"], "verify_aud": settings.audience is not None},
            )
        except jwt.MissingRequiredClaimError as exc:
            raise Unauthorized(f"token has no {exc.claim} claim") from None
        except jwt.PyJWTError as exc:
            for error_type, message in _TOKEN_ERRORS:
                if isinstance(exc, error_type):
                    raise Unauthorized(message) from None
            raise Unauthorized("token is invalid") from None
        user = claims.get(settings.user_claim)
        if isinstance(user, int) and not isinstance(user, bool):
            user = str(user)
        if not isinstance(user, str) or not user or len(user) > MAX_USER_ID_LENGTH or not _storable(user):
            raise Unauthorized(f"token has no usable {settings.user_claim} claim")
        return user, float(claims["exp"])

    def authenticate(self) -> str:
        """Return the id of the user making this request."""
        if self.settings.mode == "dev":
            header = request.headers.get("X-User-Id")
            if header is None:
                return DEV_USER_ID
            if not _DEV_USER_HEADER.match(header):
                raise BadRequest("X-User-Id must be 1 to 128 visible ASCII characters")
            return header
        authorization = request.headers.get("Authorization")
        if not authorization:
            raise Unauthorized(
                "missing bearer token: send Authorization: Bearer <token>", invalid_token=False
            )
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized("Authorization header must be 'Bearer <token>'")
        return self.user_for_token(token)


def current_user_id() -> str:
    """Return the id of the user making this request (verified once per request)."""
    if "auth_error" in g:
        raise g.auth_error
    if "user_id" not in g:
        authenticator: Authenticator = current_app.extensions["authenticator"]
        try:
            g.user_id = authenticator.authenticate()
        except ApiError as exc:
            g.auth_error = exc
            raise
    return g.user_id  # type: ignore[no-any-return]


def init_app(app: Flask, settings: AuthSettings) -> None:
    """Attach the app's authenticator."""
    app.extensions["authenticator"] = Authenticator(settings)
    if settings.mode == "dev":
        log.warning("AUTH_MODE=dev: every caller is trusted as user_123 or its X-User-Id header")

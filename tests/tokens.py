"""Real tokens for the tests: HS256 with a test secret, RS256/ES256 keys served as JWKS over HTTP."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa

HS_SECRET = "test-secret-that-is-long-enough-for-hs256!"
ISSUER = "https://auth.example.test/"
AUDIENCE = "upload-service"


def claims(sub: str = "alice", **overrides: Any) -> dict[str, Any]:
    """Return a valid claim set for ``sub``; overrides replace or (with None) remove claims."""
    now = int(time.time())
    base: dict[str, Any] = {
        "sub": sub,
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": now,
        "nbf": now,
        "exp": now + 600,
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def hs256(sub: str = "alice", secret: str = HS_SECRET, **overrides: Any) -> str:
    """Mint an HS256 token."""
    return jwt.encode(claims(sub, **overrides), secret, algorithm="HS256")


def bearer(token: str) -> dict[str, str]:
    """Return the Authorization header for ``token``."""
    return {"Authorization": f"Bearer {token}"}


def unsigned(sub: str = "alice") -> str:
    """Mint an ``alg: none`` token, as an attacker would."""
    return jwt.encode(claims(sub), None, algorithm="none")


class KeyPair:
    """A private key and its public JWK, with a kid."""

    def __init__(self, kid: str, algorithm: str):
        self.kid = kid
        self.algorithm = algorithm
        if algorithm == "RS256":
            self.private: Any = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.private.public_key()))
        else:
            self.private = ec.generate_private_key(ec.SECP256R1())
            jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(self.private.public_key()))
        self.jwk = {**jwk, "kid": kid, "use": "sig", "alg": algorithm}

    def sign(self, sub: str = "alice", **overrides: Any) -> str:
        """Mint a token signed with this key."""
        return jwt.encode(
            claims(sub, **overrides), self.private, algorithm=self.algorithm, headers={"kid": self.kid}
        )


class JwksServer:
    """A local HTTP server publishing a JWKS document, counting fetches."""

    def __init__(self) -> None:
        self.keys: list[dict[str, Any]] = []
        self.fetches = 0
        self.fail = False
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.fetches += 1
                if server.fail:
                    self.send_response(500)
                    self.end_headers()
                    return
                body = json.dumps({"keys": server.keys}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._httpd.server_port}/.well-known/jwks.json"

    @contextmanager
    def running(self) -> Iterator[JwksServer]:
        """Serve until the block ends."""
        thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._httpd.shutdown()
            self._httpd.server_close()

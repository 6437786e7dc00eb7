"""Read and check the service's configuration once, at start-up.

Variable names follow the Neon guides, so a guide's ``.env`` works unchanged.
Every malformed value is collected and reported in one ``ConfigError``; a
provider whose required variables are missing is not an error, it is simply
disabled and its routes answer 503 naming what is missing.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

import psycopg2
from psycopg2.extensions import parse_dsn

N = TypeVar("N", int, float)

PROVIDERS: tuple[str, ...] = ("s3", "r2", "b2", "azure")
#: the providers behind the S3 API (one class, three configurations): they take uploads in parts
S3_FAMILY: tuple[str, ...] = ("s3", "r2", "b2")

# The only APP_ENV values under which AUTH_MODE=dev (trust any caller) is accepted.
DEV_AUTH_APP_ENVS = ("development", "test")

# Request threads per server process (WEB_THREADS; GUNICORN_THREADS, its earlier name, still counts).
DEFAULT_SERVER_THREADS = 4

#: LOG_LEVEL's values (either server)
LOG_LEVELS: tuple[str, ...] = ("debug", "info", "warning", "error", "critical")


def pool_size_for(threads: int) -> int:
    """The database pool a process with ``threads`` request threads needs: one each, plus the recorder's."""
    return threads + 1


# SigV4 presigned URLs cannot live longer than seven days.
MAX_URL_EXPIRY_SECONDS = 7 * 24 * 3600

_BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_AZURE_CONTAINER_NAME = re.compile(r"^(?!.*--)[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")
# s3.us-west-004.backblazeb2.com -> us-west-004
_B2_HOST_REGION = re.compile(r"^s3\.([a-z0-9-]+)\.backblazeb2\.com$")

# Azurite's published development account (not a secret), for the
# UseDevelopmentStorage=true shortcut and the local stack.
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


class ConfigError(Exception):
    """The environment holds values the service cannot start with."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("invalid configuration:\n" + "\n".join(f"  - {p}" for p in problems))


@dataclass(frozen=True)
class S3CompatibleSettings:
    """One S3-compatible bucket: AWS S3, Cloudflare R2 or Backblaze B2."""

    name: str
    bucket: str
    access_key_id: str = field(repr=False)
    secret_access_key: str = field(repr=False)
    region: str
    # None means AWS itself (regional virtual-hosted endpoint).
    endpoint_url: str | None
    public_base_url: str | None
    addressing_style: Literal["path", "virtual"]
    #: objects are readable without a signature: download links are plain URLs
    public_read: bool = False
    #: sign ``If-None-Match: *`` into the service's own upload URLs, so a URL
    #: replayed after its object exists is refused (412) instead of replacing it
    write_once: bool = True
    kind: Literal["s3"] = "s3"


@dataclass(frozen=True)
class AzureSettings:
    """One Azure Blob Storage container reached with an account key."""

    name: str
    container: str
    account_name: str
    account_key: str = field(repr=False)
    # e.g. https://acct.blob.core.windows.net or http://127.0.0.1:10000/devstoreaccount1
    account_url: str
    #: the container allows anonymous blob reads: download links are plain URLs
    public_read: bool = False
    kind: Literal["azure"] = "azure"


ProviderSettings = S3CompatibleSettings | AzureSettings


@dataclass(frozen=True)
class AuthSettings:
    """How callers prove who they are."""

    #: "dev": every caller is user_123 (or X-User-Id); "jwt": bearer tokens
    mode: Literal["dev", "jwt"] = "dev"
    jwt_secret: str | None = field(default=None, repr=False)
    jwks_url: str | None = None
    issuer: str | None = None
    audience: str | None = None
    user_claim: str = "sub"
    leeway_seconds: int = 30


@dataclass(frozen=True)
class QuotaLimits:
    """One user's limits (the defaults, or an override); None is unlimited."""

    bytes: int | None = None
    files: int | None = None
    unsaved_bytes: int | None = None
    unsaved_uploads: int | None = None


@dataclass(frozen=True)
class Settings:
    """Everything the service reads from its environment."""

    database_url: str = field(repr=False)
    providers: Mapping[str, ProviderSettings]
    missing: Mapping[str, tuple[str, ...]]
    auth: AuthSettings = field(default_factory=AuthSettings)
    #: a direct (unpooled) URL of the same database, for migrations (Neon: DATABASE_URL_UNPOOLED)
    database_url_unpooled: str | None = field(default=None, repr=False)
    max_upload_bytes: int = 100 * 1024**2
    #: media-type patterns such as "image/*"; empty means any type
    allowed_content_types: tuple[str, ...] = ()
    #: every presign must declare a checksum its provider checks (checksumSHA256 or contentMD5)
    require_checksums: bool = False
    cors_allowed_origins: tuple[str, ...] = ()
    cors_allow_credentials: bool = False
    rate_limit_presign: str = "120/minute"
    rate_limit_save: str = "120/minute"
    rate_limit_files: str = "600/minute"
    rate_limit_parts: str = "6000/minute"
    rate_limit_storage_uri: str = field(default="memory://", repr=False)
    #: reverse proxies in front of the service whose X-Forwarded-* headers are trusted
    trusted_proxy_count: int = 0
    #: Neon-style row-level security: every transaction says whose rows it may see
    db_row_level_security: bool = False
    default_provider: str = "s3"
    upload_url_expires_seconds: int = 300
    download_url_expires_seconds: int = 900
    #: request threads per process (WEB_THREADS); the pool's default follows it
    server_threads: int = DEFAULT_SERVER_THREADS
    db_pool_size: int = pool_size_for(DEFAULT_SERVER_THREADS)
    db_pool_timeout_seconds: float = 5.0
    db_connect_timeout_seconds: int = 5
    db_statement_timeout_ms: int = 5000
    storage_connect_timeout_seconds: float = 3.0
    storage_read_timeout_seconds: float = 5.0
    storage_max_attempts: int = 3
    #: how often each process sweeps abandoned uploads by itself (0: never; ``flask storage sweep`` only)
    sweep_interval_seconds: float = 60.0
    #: how long after its last URL expired an unsaved upload is swept (time left to call save-metadata)
    sweep_grace_seconds: float = 300.0
    #: the upload page sends Azure files larger than this in blocks
    page_multipart_threshold_bytes: int = 100 * 1024**2
    #: where the upload page gets a bearer token from (same-site, with cookies); None: pasted
    page_token_url: str | None = None
    #: webhooks (README "Events"): receivers; none means no events are written
    webhook_urls: tuple[str, ...] = field(default=(), repr=False)
    webhook_secret: str | None = field(default=None, repr=False)
    webhook_max_attempts: int = 10
    webhook_retry_base_seconds: float = 5.0
    webhook_timeout_seconds: float = 10.0
    events_retention_days: float = 7.0
    #: per-user limits (README "Quotas"); None is unlimited
    quotas: QuotaLimits = field(default_factory=lambda: QuotaLimits())
    #: enforce quotas (on by default when any QUOTA_* default is set)
    quotas_enforced: bool = False

    @property
    def events_enabled(self) -> bool:
        """Whether changes write events for webhooks (WEBHOOK_URLS is set)."""
        return bool(self.webhook_urls)


def storage_call_budget_seconds(settings: Settings) -> float:
    """The longest one storage call may take: every attempt timing out, with 1 s of backoff between."""
    return settings.storage_max_attempts * (
        settings.storage_connect_timeout_seconds + settings.storage_read_timeout_seconds + 1
    )


def server_ports(env: EnvReader) -> tuple[int, int | None]:
    """The servers' PORT (3000) and METRICS_PORT (None: no metrics server); problems go to env.problems."""
    port = env.integer("PORT", 3000, 1, 65535)
    metrics_port = env.integer("METRICS_PORT", 0, 1, 65535) if env.get("METRICS_PORT") else None
    if metrics_port == port:
        env.problems.append(
            f"METRICS_PORT: must differ from PORT ({port}): the public port never serves metrics"
        )
    return port, metrics_port


class EnvReader:
    """Pull typed values out of an environment mapping, collecting problems (also gunicorn's config)."""

    def __init__(self, env: Mapping[str, str]):
        self.env = env
        self.problems: list[str] = []

    def get(self, name: str) -> str | None:
        value = self.env.get(name)
        if value is None:
            return None
        value = str(value).strip()
        return value or None

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        """One of ``choices`` (case-insensitive, answered in lower case)."""
        raw = self.get(name)
        if raw is None:
            return default
        if raw.lower() not in choices:
            self.problems.append(f"{name}: must be one of {', '.join(choices)}, got {raw!r}")
            return default
        return raw.lower()

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        return self._bounded(name, default, low, high, int, "a whole number")

    def number(self, name: str, default: float, low: float, high: float) -> float:
        return self._bounded(name, default, low, high, float, "a number")

    def _bounded(self, name: str, default: N, low: N, high: N, cast: Callable[[str], N], kind: str) -> N:
        raw = self.get(name)
        if raw is None:
            return default
        try:
            value = cast(raw)
        except ValueError:
            self.problems.append(f"{name}: expected {kind}, got {raw!r}")
            return default
        if not low <= value <= high:
            self.problems.append(f"{name}: must be between {low} and {high}, got {value}")
            return default
        return value

    def switch(self, name: str, default: bool) -> bool:
        raw = (self.get(name) or "").lower()
        if not raw:
            return default
        if raw in ("on", "true", "1", "yes"):
            return True
        if raw in ("off", "false", "0", "no"):
            return False
        self.problems.append(f"{name}: expected on or off, got {raw!r}")
        return default

    def url(self, name: str) -> str | None:
        raw = self.get(name)
        if raw is None:
            return None
        parts = urlsplit(raw)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            # Never echo the value: a URL may carry credentials.
            self.problems.append(f"{name}: expected an http(s) URL such as https://host.example.com")
            return None
        return raw.rstrip("/")

    def bucket(self, name: str, pattern: re.Pattern[str] = _BUCKET_NAME) -> str | None:
        raw = self.get(name)
        if raw is not None and not pattern.match(raw):
            self.problems.append(
                f"{name}: {raw!r} is not a valid name (3-63 lowercase letters, digits, '-' or '.')"
            )
        return raw


def _missing(reader: EnvReader, names: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(n for n in names if reader.get(n) is None)


def _s3_settings(r: EnvReader) -> tuple[ProviderSettings | None, tuple[str, ...]]:
    required = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION", "S3_BUCKET_NAME")
    endpoint = r.url("S3_ENDPOINT_URL")
    bucket = r.bucket("S3_BUCKET_NAME")
    public_read = r.switch("S3_PUBLIC_READ", False)
    write_once = r.switch("S3_WRITE_ONCE", True)
    missing = _missing(r, required)
    if missing:
        return None, missing
    assert bucket is not None
    return S3CompatibleSettings(
        name="s3",
        bucket=bucket,
        access_key_id=r.get("AWS_ACCESS_KEY_ID") or "",
        secret_access_key=r.get("AWS_SECRET_ACCESS_KEY") or "",
        region=r.get("AWS_REGION") or "",
        endpoint_url=endpoint,
        public_base_url=None,
        public_read=public_read,
        write_once=write_once,
        # Virtual-hosted URLs on the bucket's regional host are what AWS wants;
        # a dotted bucket name would break TLS there, and emulators want paths.
        addressing_style="path" if endpoint or "." in bucket else "virtual",
    ), ()


def _r2_settings(r: EnvReader) -> tuple[ProviderSettings | None, tuple[str, ...]]:
    endpoint = r.url("R2_ENDPOINT_URL")
    required: tuple[str, ...] = ("R2_ACCESS_KEY_ID", "R2_SECRET_ACCESS_KEY", "R2_BUCKET_NAME")
    if r.get("R2_ENDPOINT_URL") is None:
        required = ("R2_ACCOUNT_ID", *required)
    bucket = r.bucket("R2_BUCKET_NAME")
    public = r.url("R2_PUBLIC_BASE_URL")
    write_once = r.switch("R2_WRITE_ONCE", True)
    missing = _missing(r, required)
    if missing:
        return None, missing
    assert bucket is not None
    return S3CompatibleSettings(
        name="r2",
        bucket=bucket,
        access_key_id=r.get("R2_ACCESS_KEY_ID") or "",
        secret_access_key=r.get("R2_SECRET_ACCESS_KEY") or "",
        region="auto",
        endpoint_url=endpoint or f"https://{r.get('R2_ACCOUNT_ID')}.r2.cloudflarestorage.com",
        public_base_url=public,
        addressing_style="path",
        # R2 serves public reads only on the bucket's public URL.
        public_read=public is not None,
        write_once=write_once,
    ), ()


# Backblaze's direct-upload article names two of the B2 guide's variables differently.
B2_ALTERNATIVE_NAMES = {"B2_APPLICATION_KEY_ID": "B2_KEY_ID", "B2_BUCKET_NAME": "B2_BUCKET"}


def _b2_endpoint(r: EnvReader) -> str | None:
    raw = r.get("B2_ENDPOINT_URL")
    if raw is not None and "://" not in raw and _B2_HOST_REGION.match(raw.rstrip("/")):
        # B2's console shows the endpoint as a bare host, and the article's
        # SDK (new AWS.Endpoint(...)) takes it so, meaning HTTPS.
        return f"https://{raw.rstrip('/')}"
    return r.url("B2_ENDPOINT_URL")


def _b2_settings(r: EnvReader) -> tuple[ProviderSettings | None, tuple[str, ...]]:
    for name, alternative in B2_ALTERNATIVE_NAMES.items():
        if r.get(name) is None and r.get(alternative) is not None:
            r.env = {**r.env, name: r.env[alternative]}
    required = ("B2_APPLICATION_KEY_ID", "B2_APPLICATION_KEY", "B2_BUCKET_NAME", "B2_ENDPOINT_URL")
    endpoint = _b2_endpoint(r)
    bucket = r.bucket("B2_BUCKET_NAME")
    public_read = r.switch("B2_PUBLIC_READ", False)
    # Off unless asked: B2's S3 API is reported both to honour and to ignore
    # If-None-Match on PUT; an operator who has checked their bucket turns it on.
    write_once = r.switch("B2_WRITE_ONCE", False)
    missing = _missing(r, required)
    if missing or endpoint is None:
        return None, tuple(
            f"{name} or {B2_ALTERNATIVE_NAMES[name]}" if name in B2_ALTERNATIVE_NAMES else name
            for name in missing
        )
    assert bucket is not None
    host = urlsplit(endpoint).hostname or ""
    match = _B2_HOST_REGION.match(host)
    region = r.get("B2_REGION") or (match.group(1) if match else None)
    if region is None:
        r.problems.append(
            "B2_REGION: required because B2_ENDPOINT_URL's host does not name a region "
            "(expected s3.<region>.backblazeb2.com)"
        )
        return None, ()
    return S3CompatibleSettings(
        name="b2",
        bucket=bucket,
        access_key_id=r.get("B2_APPLICATION_KEY_ID") or "",
        secret_access_key=r.get("B2_APPLICATION_KEY") or "",
        region=region,
        endpoint_url=endpoint,
        public_base_url=None,
        addressing_style="path",
        public_read=public_read,
        write_once=write_once,
    ), ()


def parse_azure_connection_string(value: str) -> dict[str, str]:
    """Split ``Key=Value;...`` into a dict; values may contain '='."""
    parts: dict[str, str] = {}
    for item in value.split(";"):
        if not item.strip():
            continue
        key, sep, val = item.partition("=")
        if not sep:
            raise ValueError("expected Key=Value pairs separated by ';'")
        parts[key.strip().lower()] = val.strip()
    return parts


def _azure_account(r: EnvReader, name: str) -> tuple[str, str, str] | None:
    raw = r.get(name) or ""
    try:
        parts = parse_azure_connection_string(raw)
    except ValueError as exc:
        r.problems.append(f"{name}: {exc}")
        return None
    if parts.get("usedevelopmentstorage", "").lower() == "true":
        return AZURITE_ACCOUNT, AZURITE_KEY, f"http://127.0.0.1:10000/{AZURITE_ACCOUNT}"
    account, key = parts.get("accountname"), parts.get("accountkey")
    if not account or not key:
        # SAS URLs are signed with the account key, so a SAS-only or
        # token-only connection string cannot presign uploads.
        r.problems.append(f"{name}: must contain AccountName and AccountKey")
        return None
    endpoint = parts.get("blobendpoint")
    if endpoint:
        split = urlsplit(endpoint)
        if split.scheme not in ("http", "https") or not split.hostname:
            r.problems.append(f"{name}: BlobEndpoint is not an http(s) URL")
            return None
        return account, key, endpoint.rstrip("/")
    protocol = parts.get("defaultendpointsprotocol", "https")
    suffix = parts.get("endpointsuffix", "core.windows.net")
    return account, key, f"{protocol}://{account}.blob.{suffix}"


def _azure_settings(r: EnvReader) -> tuple[ProviderSettings | None, tuple[str, ...]]:
    required = ("AZURE_STORAGE_CONNECTION_STRING", "AZURE_STORAGE_CONTAINER_NAME")
    container = r.bucket("AZURE_STORAGE_CONTAINER_NAME", _AZURE_CONTAINER_NAME)
    public_read = r.switch("AZURE_PUBLIC_READ", False)
    missing = _missing(r, required)
    if missing:
        return None, missing
    account = _azure_account(r, "AZURE_STORAGE_CONNECTION_STRING")
    if account is None or container is None:
        return None, ()
    account_name, account_key, account_url = account
    return AzureSettings(
        name="azure",
        container=container,
        account_name=account_name,
        account_key=account_key,
        account_url=account_url,
        public_read=public_read,
    ), ()


def _database_url(r: EnvReader, name: str = "DATABASE_URL", *, required: bool = True) -> str | None:
    url = r.get(name)
    if url is None:
        if required:
            r.problems.append(f"{name}: required (a PostgreSQL URL such as postgresql://user:pass@host/db)")
        return None
    try:
        parse_dsn(url)
    except psycopg2.ProgrammingError:
        # The message psycopg2 gives may quote the password; keep it out.
        r.problems.append(f"{name}: not a valid PostgreSQL connection URL")
    return url


_MEDIA_PATTERN = re.compile(r"^(\*/\*|[a-z0-9][a-z0-9!#$&^_.+-]*/(\*|[a-z0-9][a-z0-9!#$&^_.+-]*))$")
_RATE_LIMIT = re.compile(
    r"^\s*\d+\s*(/|per)\s*(\d+\s*)?(second|minute|hour|day|month|year)s?\s*$", re.IGNORECASE
)


_AUTH_DEFAULTS = AuthSettings()


def _auth_settings(r: EnvReader) -> AuthSettings:
    mode = (r.get("AUTH_MODE") or "").lower()
    secret = r.get("AUTH_JWT_SECRET")
    jwks_url = r.url("AUTH_JWKS_URL")
    if mode not in ("", "dev", "jwt"):
        r.problems.append(f"AUTH_MODE: must be dev or jwt, got {mode!r}")
        mode = "jwt"
    if not mode:
        mode = "jwt" if secret or r.get("AUTH_JWKS_URL") else ""
    asked_for_dev = mode == "dev"
    if not mode:
        r.problems.append(
            "AUTH_MODE: no authentication configured: set AUTH_JWT_SECRET or AUTH_JWKS_URL, "
            "or AUTH_MODE=dev for a local run"
        )
        mode = "dev"
    app_env = (r.get("APP_ENV") or "").lower()
    if asked_for_dev and app_env not in DEV_AUTH_APP_ENVS:
        # Dev mode trusts any X-User-Id: it must be asked for on a development
        # machine, never be the result of a missing or misspelled APP_ENV.
        shown = f"APP_ENV={app_env!r}" if app_env else "APP_ENV is not set"
        r.problems.append(
            "AUTH_MODE: dev mode trusts any caller and is accepted only with APP_ENV=development "
            f"or APP_ENV=test ({shown}); configure AUTH_JWT_SECRET or AUTH_JWKS_URL instead"
        )
    if mode == "jwt" and not secret and not r.get("AUTH_JWKS_URL"):
        r.problems.append(
            "AUTH_MODE: jwt needs AUTH_JWT_SECRET (HS256) or AUTH_JWKS_URL (RS256, ES256, EdDSA, ...)"
        )
    if secret is not None and len(secret.encode("utf-8")) < 32:
        # RFC 7518: an HS256 key must be at least as long as the hash (32 bytes).
        r.problems.append("AUTH_JWT_SECRET: must be at least 32 bytes long")
    return AuthSettings(
        mode="jwt" if mode == "jwt" else "dev",
        jwt_secret=secret,
        jwks_url=jwks_url,
        issuer=r.get("AUTH_JWT_ISSUER"),
        audience=r.get("AUTH_JWT_AUDIENCE"),
        user_claim=r.get("AUTH_USER_CLAIM") or _AUTH_DEFAULTS.user_claim,
        leeway_seconds=r.integer("AUTH_JWT_LEEWAY_SECONDS", _AUTH_DEFAULTS.leeway_seconds, 0, 600),
    )


def _list(r: EnvReader, name: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in (r.get(name) or "").split(",") if item.strip())


def _content_type_patterns(r: EnvReader) -> tuple[str, ...]:
    patterns = tuple(p.lower() for p in _list(r, "ALLOWED_CONTENT_TYPES"))
    bad = [p for p in patterns if not _MEDIA_PATTERN.match(p)]
    if bad:
        r.problems.append(
            f"ALLOWED_CONTENT_TYPES: not media types or patterns like image/*: {', '.join(map(repr, bad))}"
        )
    return patterns


def _cors(r: EnvReader) -> tuple[tuple[str, ...], bool]:
    origins = _list(r, "CORS_ALLOWED_ORIGINS")
    allow_credentials = r.switch("CORS_ALLOW_CREDENTIALS", DEFAULTS.cors_allow_credentials)
    for origin in origins:
        if origin == "*":
            if allow_credentials:
                r.problems.append("CORS_ALLOWED_ORIGINS: '*' is refused when CORS_ALLOW_CREDENTIALS is on")
            continue
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/"):
            r.problems.append(
                f"CORS_ALLOWED_ORIGINS: {origin!r} is not an origin such as https://app.example.com"
            )
    return tuple(o.rstrip("/") for o in origins), allow_credentials


def _rate_limit(r: EnvReader, name: str, default: str) -> str:
    value = r.get(name) or default
    if not _RATE_LIMIT.match(value):
        r.problems.append(f"{name}: expected a rate such as 120/minute, got {value!r}")
    return value


def _rate_limit_storage(r: EnvReader) -> str:
    uri = r.get("RATE_LIMIT_STORAGE_URI") or DEFAULTS.rate_limit_storage_uri
    if urlsplit(uri).scheme not in ("memory", "redis", "rediss", "redis+sentinel", "redis+cluster"):
        r.problems.append("RATE_LIMIT_STORAGE_URI: expected memory:// or a redis:// URL")
    return uri


# Every default of the service, written once: the field defaults above.
WEBHOOK_SECRET_PREFIX = "whsec_"  # noqa: S105 - the Standard Webhooks prefix, not a secret


def _webhook_settings(r: EnvReader) -> dict[str, Any]:
    urls: list[str] = []
    for raw in (r.get("WEBHOOK_URLS") or "").split(","):
        raw = raw.strip()
        if not raw:
            continue
        parts = urlsplit(raw)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            # Never echo the value: a URL may carry credentials.
            r.problems.append(f"WEBHOOK_URLS: entry {len(urls) + 1} is not an http(s) URL")
        urls.append(raw)
    secret = r.get("WEBHOOK_SECRET")
    if urls and secret is None:
        r.problems.append(
            "WEBHOOK_SECRET: required with WEBHOOK_URLS (whsec_ followed by base64 of 24 to 64 bytes)"
        )
    elif secret is not None and not _valid_webhook_secret(secret):
        r.problems.append("WEBHOOK_SECRET: expected whsec_ followed by base64 of 24 to 64 random bytes")
    d = DEFAULTS
    return {
        "webhook_urls": tuple(urls),
        "webhook_secret": secret,
        "webhook_max_attempts": r.integer("WEBHOOK_MAX_ATTEMPTS", d.webhook_max_attempts, 1, 100),
        "webhook_retry_base_seconds": r.number(
            "WEBHOOK_RETRY_BASE_SECONDS", d.webhook_retry_base_seconds, 0.01, 3600.0
        ),
        "webhook_timeout_seconds": r.number("WEBHOOK_TIMEOUT_SECONDS", d.webhook_timeout_seconds, 0.1, 300.0),
        "events_retention_days": r.number("EVENTS_RETENTION_DAYS", d.events_retention_days, 0.0, 3650.0),
    }


def _valid_webhook_secret(secret: str) -> bool:
    if not secret.startswith(WEBHOOK_SECRET_PREFIX):
        return False
    try:
        key = base64.b64decode(secret[len(WEBHOOK_SECRET_PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        return False
    return 24 <= len(key) <= 64


def _quota_settings(r: EnvReader) -> dict[str, Any]:
    def limit(name: str) -> int | None:
        return r.integer(name, 0, 0, 2**62) if r.get(name) is not None else None

    limits = QuotaLimits(
        bytes=limit("QUOTA_BYTES_PER_USER"),
        files=limit("QUOTA_FILES_PER_USER"),
        unsaved_bytes=limit("QUOTA_UNSAVED_BYTES_PER_USER"),
        unsaved_uploads=limit("QUOTA_UNSAVED_UPLOADS_PER_USER"),
    )
    any_default = any(v is not None for v in dataclasses.astuple(limits))
    return {"quotas": limits, "quotas_enforced": r.switch("QUOTAS", any_default)}


DEFAULTS = Settings(database_url="", providers={}, missing={})


def load_settings(env: Mapping[str, str]) -> Settings:
    """Build ``Settings`` from ``env`` or raise ``ConfigError`` naming every bad variable."""
    r = EnvReader(env)
    database_url = _database_url(r) or ""
    providers: dict[str, ProviderSettings] = {}
    missing: dict[str, tuple[str, ...]] = {}
    for name, build in (
        ("s3", _s3_settings),
        ("r2", _r2_settings),
        ("b2", _b2_settings),
        ("azure", _azure_settings),
    ):
        provider, absent = build(r)
        if provider is not None:
            providers[name] = provider
        elif absent:
            missing[name] = absent

    default_provider = (r.get("DEFAULT_PROVIDER") or DEFAULTS.default_provider).lower()
    if default_provider not in PROVIDERS:
        r.problems.append(
            f"DEFAULT_PROVIDER: must be one of {', '.join(PROVIDERS)}, got {default_provider!r}"
        )

    cors_origins, cors_credentials = _cors(r)
    d = DEFAULTS
    threads_name = (
        "WEB_THREADS"
        if r.get("WEB_THREADS") is not None or r.get("GUNICORN_THREADS") is None
        else "GUNICORN_THREADS"
    )
    threads = r.integer(threads_name, d.server_threads, 1, 1000)
    result = Settings(
        database_url=database_url,
        database_url_unpooled=_database_url(r, "DATABASE_URL_UNPOOLED", required=False),
        providers=providers,
        missing=missing,
        auth=_auth_settings(r),
        max_upload_bytes=r.integer("MAX_UPLOAD_BYTES", d.max_upload_bytes, 1, 5 * 1024**4),
        allowed_content_types=_content_type_patterns(r),
        require_checksums=r.switch("REQUIRE_CHECKSUMS", d.require_checksums),
        cors_allowed_origins=cors_origins,
        cors_allow_credentials=cors_credentials,
        rate_limit_presign=_rate_limit(r, "RATE_LIMIT_PRESIGN", d.rate_limit_presign),
        rate_limit_save=_rate_limit(r, "RATE_LIMIT_SAVE", d.rate_limit_save),
        rate_limit_files=_rate_limit(r, "RATE_LIMIT_FILES", d.rate_limit_files),
        rate_limit_parts=_rate_limit(r, "RATE_LIMIT_PARTS", d.rate_limit_parts),
        rate_limit_storage_uri=_rate_limit_storage(r),
        db_row_level_security=r.switch("DB_ROW_LEVEL_SECURITY", d.db_row_level_security),
        trusted_proxy_count=r.integer("TRUSTED_PROXY_COUNT", d.trusted_proxy_count, 0, 10),
        default_provider=default_provider,
        upload_url_expires_seconds=r.integer(
            "UPLOAD_URL_EXPIRES_SECONDS", d.upload_url_expires_seconds, 1, MAX_URL_EXPIRY_SECONDS
        ),
        download_url_expires_seconds=r.integer(
            "DOWNLOAD_URL_EXPIRES_SECONDS", d.download_url_expires_seconds, 1, MAX_URL_EXPIRY_SECONDS
        ),
        server_threads=threads,
        db_pool_size=r.integer("DB_POOL_SIZE", pool_size_for(threads), 1, 1000),
        db_pool_timeout_seconds=r.number("DB_POOL_TIMEOUT_SECONDS", d.db_pool_timeout_seconds, 0.0, 300.0),
        db_connect_timeout_seconds=r.integer(
            "DB_CONNECT_TIMEOUT_SECONDS", d.db_connect_timeout_seconds, 1, 300
        ),
        db_statement_timeout_ms=r.integer("DB_STATEMENT_TIMEOUT_MS", d.db_statement_timeout_ms, 1, 3_600_000),
        storage_connect_timeout_seconds=r.number(
            "STORAGE_CONNECT_TIMEOUT_SECONDS", d.storage_connect_timeout_seconds, 0.1, 300.0
        ),
        storage_read_timeout_seconds=r.number(
            "STORAGE_READ_TIMEOUT_SECONDS", d.storage_read_timeout_seconds, 0.1, 300.0
        ),
        storage_max_attempts=r.integer("STORAGE_MAX_ATTEMPTS", d.storage_max_attempts, 1, 10),
        sweep_interval_seconds=r.number("SWEEP_INTERVAL_SECONDS", d.sweep_interval_seconds, 0.0, 86_400.0),
        sweep_grace_seconds=r.number("SWEEP_GRACE_SECONDS", d.sweep_grace_seconds, 0.0, 7 * 86_400.0),
        page_multipart_threshold_bytes=r.integer(
            "UPLOAD_PAGE_MULTIPART_THRESHOLD_BYTES",
            d.page_multipart_threshold_bytes,
            5 * 1024**2,
            5 * 1024**3,
        ),
        page_token_url=r.url("UPLOAD_PAGE_TOKEN_URL"),
        **_webhook_settings(r),
        **_quota_settings(r),
    )
    if r.problems:
        raise ConfigError(r.problems)
    return result

"""Configuration: read once, every bad variable named, providers enabled by their variables."""

from __future__ import annotations

import pytest

from app.config import AzureSettings, ConfigError, S3CompatibleSettings, load_settings

DB = {
    "DATABASE_URL": "postgresql://u:secret-pw@ep-x.neon.tech/db?sslmode=require&channel_binding=require",
    "AUTH_MODE": "dev",
    "APP_ENV": "test",
}
S3 = {
    "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE",
    "AWS_SECRET_ACCESS_KEY": "aws-secret",
    "AWS_REGION": "eu-west-1",
    "S3_BUCKET_NAME": "my-neon-app-s3-uploads",
}
R2 = {
    "R2_ACCOUNT_ID": "abc123",
    "R2_ACCESS_KEY_ID": "r2key",
    "R2_SECRET_ACCESS_KEY": "r2-secret",
    "R2_BUCKET_NAME": "my-neon-app-files",
    "R2_PUBLIC_BASE_URL": "https://pub-hash.r2.dev/",
}
B2 = {
    "B2_APPLICATION_KEY_ID": "b2key",
    "B2_APPLICATION_KEY": "b2-secret",
    "B2_BUCKET_NAME": "my-neon-app-b2-files",
    "B2_ENDPOINT_URL": "https://s3.us-west-004.backblazeb2.com",
}
AZ = {
    "AZURE_STORAGE_CONNECTION_STRING": (
        "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=a2V5LWtleQ==;EndpointSuffix=core.windows.net"
    ),
    "AZURE_STORAGE_CONTAINER_NAME": "uploads",
}


def problems_of(env: dict[str, str]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_settings(env)
    return caught.value.problems


def test_config_reads_a_neon_url_and_all_four_guides_env_files() -> None:
    settings = load_settings({**DB, **S3, **R2, **B2, **AZ})
    assert settings.database_url == DB["DATABASE_URL"]
    assert set(settings.providers) == {"s3", "r2", "b2", "azure"}
    assert settings.upload_url_expires_seconds == 300
    assert settings.default_provider == "s3"
    assert settings.missing == {}


def test_config_aws_uses_the_regional_virtual_host() -> None:
    s3 = load_settings({**DB, **S3}).providers["s3"]
    assert isinstance(s3, S3CompatibleSettings)
    assert (s3.region, s3.endpoint_url, s3.addressing_style) == ("eu-west-1", None, "virtual")


def test_config_dotted_bucket_falls_back_to_path_style() -> None:
    s3 = load_settings({**DB, **S3, "S3_BUCKET_NAME": "uploads.example.com"}).providers["s3"]
    assert isinstance(s3, S3CompatibleSettings)
    assert s3.addressing_style == "path"


def test_config_r2_endpoint_comes_from_account_id() -> None:
    r2 = load_settings({**DB, **R2}).providers["r2"]
    assert isinstance(r2, S3CompatibleSettings)
    assert r2.endpoint_url == "https://abc123.r2.cloudflarestorage.com"
    assert r2.region == "auto"
    assert r2.public_base_url == "https://pub-hash.r2.dev"


def test_config_r2_endpoint_override_makes_account_id_optional() -> None:
    env = {**DB, **R2, "R2_ENDPOINT_URL": "http://127.0.0.1:8333"}
    del env["R2_ACCOUNT_ID"]
    r2 = load_settings(env).providers["r2"]
    assert isinstance(r2, S3CompatibleSettings)
    assert r2.endpoint_url == "http://127.0.0.1:8333"


def test_config_b2_region_comes_from_the_endpoint_host() -> None:
    b2 = load_settings({**DB, **B2}).providers["b2"]
    assert isinstance(b2, S3CompatibleSettings)
    assert b2.region == "us-west-004"


def test_config_b2_region_is_required_when_the_host_names_none() -> None:
    env = {**DB, **B2, "B2_ENDPOINT_URL": "http://127.0.0.1:8333"}
    assert problems_of(env) == [
        "B2_REGION: required because B2_ENDPOINT_URL's host does not name a region "
        "(expected s3.<region>.backblazeb2.com)"
    ]
    b2 = load_settings({**env, "B2_REGION": "us-west-004"}).providers["b2"]
    assert isinstance(b2, S3CompatibleSettings)
    assert b2.region == "us-west-004"


def test_config_azure_connection_string_is_parsed() -> None:
    azure = load_settings({**DB, **AZ}).providers["azure"]
    assert isinstance(azure, AzureSettings)
    assert azure.account_name == "acct"
    assert azure.account_url == "https://acct.blob.core.windows.net"
    assert azure.container == "uploads"


def test_config_azure_development_storage_shortcut() -> None:
    env = {**DB, **AZ, "AZURE_STORAGE_CONNECTION_STRING": "UseDevelopmentStorage=true"}
    azure = load_settings(env).providers["azure"]
    assert isinstance(azure, AzureSettings)
    assert azure.account_url == "http://127.0.0.1:10000/devstoreaccount1"


def test_config_provider_without_variables_is_disabled_with_their_names() -> None:
    settings = load_settings({**DB, **S3, "R2_BUCKET_NAME": "half-configured"})
    assert set(settings.providers) == {"s3"}
    assert settings.missing["r2"] == ("R2_ACCOUNT_ID", "R2_ACCESS_KEY_ID", "R2_SECRET_ACCESS_KEY")
    assert settings.missing["azure"] == ("AZURE_STORAGE_CONNECTION_STRING", "AZURE_STORAGE_CONTAINER_NAME")


def test_config_blank_values_count_as_missing() -> None:
    settings = load_settings({**DB, **S3, "S3_BUCKET_NAME": "  "})
    assert settings.missing["s3"] == ("S3_BUCKET_NAME",)


def test_config_missing_database_url_stops_start_up() -> None:
    assert problems_of({"AUTH_MODE": "dev", "APP_ENV": "development"}) == [
        "DATABASE_URL: required (a PostgreSQL URL such as postgresql://user:pass@host/db)"
    ]


def test_config_names_every_malformed_variable_at_once() -> None:
    env = {
        "DATABASE_URL": "nonsense with spaces",
        **S3,
        "S3_ENDPOINT_URL": "not-a-url",
        "UPLOAD_URL_EXPIRES_SECONDS": "five minutes",
        "DEFAULT_PROVIDER": "gcs",
        **B2,
        "B2_ENDPOINT_URL": "ftp://s3.us-west-004.backblazeb2.com",
        "DB_POOL_SIZE": "0",
        **AZ,
        "AZURE_STORAGE_CONNECTION_STRING": "AccountName=acct",
    }
    problems = problems_of(env)
    assert problems == [
        "DATABASE_URL: not a valid PostgreSQL connection URL",
        "S3_ENDPOINT_URL: expected an http(s) URL such as https://host.example.com",
        "B2_ENDPOINT_URL: expected an http(s) URL such as https://host.example.com",
        "AZURE_STORAGE_CONNECTION_STRING: must contain AccountName and AccountKey",
        "DEFAULT_PROVIDER: must be one of s3, r2, b2, azure, got 'gcs'",
        "AUTH_MODE: no authentication configured: set AUTH_JWT_SECRET or AUTH_JWKS_URL, "
        "or AUTH_MODE=dev for a local run",
        "UPLOAD_URL_EXPIRES_SECONDS: expected a whole number, got 'five minutes'",
        "DB_POOL_SIZE: must be between 1 and 1000, got 0",
    ]


@pytest.mark.parametrize("name", ["UPLOAD_URL_EXPIRES_SECONDS", "DOWNLOAD_URL_EXPIRES_SECONDS"])
@pytest.mark.parametrize("value", ["0", "-5", "604801"])
def test_config_expiry_out_of_range_is_refused(name: str, value: str) -> None:
    [problem] = problems_of({**DB, name: value})
    assert problem.startswith(f"{name}: must be between 1 and 604800")


@pytest.mark.parametrize("name", ["S3_PUBLIC_READ", "B2_PUBLIC_READ", "AZURE_PUBLIC_READ"])
def test_config_public_read_switches_are_checked(name: str) -> None:
    assert problems_of({**DB, name: "maybe"}) == [f"{name}: expected on or off, got 'maybe'"]


@pytest.mark.parametrize("name", ["RATE_LIMIT_FILES", "RATE_LIMIT_PARTS"])
def test_config_rate_limits_are_checked(name: str) -> None:
    assert problems_of({**DB, name: "lots"}) == [f"{name}: expected a rate such as 120/minute, got 'lots'"]


def test_config_bad_bucket_name_is_named() -> None:
    assert problems_of({**DB, **S3, "S3_BUCKET_NAME": "Bad_Bucket"}) == [
        "S3_BUCKET_NAME: 'Bad_Bucket' is not a valid name (3-63 lowercase letters, digits, '-' or '.')"
    ]


def test_config_error_and_repr_never_show_secrets() -> None:
    env = {**DB, **S3, **AZ, "DATABASE_URL": "postgresql://u:secret-pw@host:notaport/db"}
    env["S3_ENDPOINT_URL"] = "ftp://user:hunter2@host"
    text = str(ConfigError(problems_of(env)))
    assert "hunter2" not in text
    settings = load_settings({**DB, **S3, **AZ})
    shown = repr(settings)
    for secret in ("secret-pw", "aws-secret", "a2V5LWtleQ=="):
        assert secret not in shown


def test_config_takes_backblazes_article_names_and_its_bare_endpoint_host() -> None:
    env = {
        **DB,
        "B2_KEY_ID": "b2key",
        "B2_APPLICATION_KEY": "b2-secret",
        "B2_BUCKET": "tutorial-bucket",
        # As B2's console shows it, and as the article's SDK takes it: HTTPS.
        "B2_ENDPOINT_URL": "s3.us-west-004.backblazeb2.com",
    }
    b2 = load_settings(env).providers["b2"]
    assert isinstance(b2, S3CompatibleSettings)
    assert (b2.bucket, b2.access_key_id, b2.region) == ("tutorial-bucket", "b2key", "us-west-004")
    assert b2.endpoint_url == "https://s3.us-west-004.backblazeb2.com"
    # The guide's names win when both are set.
    both = load_settings({**env, "B2_BUCKET_NAME": "my-neon-app-b2-files"}).providers["b2"]
    assert isinstance(both, S3CompatibleSettings) and both.bucket == "my-neon-app-b2-files"


def test_config_names_both_spellings_of_a_missing_b2_variable() -> None:
    settings = load_settings(
        {**DB, "B2_APPLICATION_KEY": "k", "B2_ENDPOINT_URL": "https://s3.us-west-004.backblazeb2.com"}
    )
    assert settings.missing["b2"] == ("B2_APPLICATION_KEY_ID or B2_KEY_ID", "B2_BUCKET_NAME or B2_BUCKET")


def test_every_default_is_the_settings_own() -> None:
    # load_settings takes each default from Settings' fields: nothing is written twice.
    from dataclasses import fields

    from app.config import DEFAULTS

    loaded = load_settings(DB)
    for item in fields(DEFAULTS):
        if item.name not in ("database_url", "providers", "missing", "auth"):
            assert getattr(loaded, item.name) == getattr(DEFAULTS, item.name), item.name


def test_the_pool_follows_the_servers_threads_unless_set() -> None:
    assert load_settings(DB).db_pool_size == 5  # 4 threads and the presign-record writer
    assert load_settings({**DB, "WEB_THREADS": "8"}).db_pool_size == 9
    assert load_settings({**DB, "WEB_THREADS": "8", "DB_POOL_SIZE": "3"}).db_pool_size == 3


def test_gunicorn_threads_still_sets_the_threads_and_web_threads_wins() -> None:
    assert load_settings({**DB, "GUNICORN_THREADS": "6"}).server_threads == 6
    assert load_settings({**DB, "GUNICORN_THREADS": "6", "WEB_THREADS": "3"}).server_threads == 3
    with pytest.raises(ConfigError, match="GUNICORN_THREADS: expected a whole number, got 'x'"):
        load_settings({**DB, "GUNICORN_THREADS": "x"})


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        (
            {"CORS_ALLOWED_ORIGINS": "*", "CORS_ALLOW_CREDENTIALS": "true"},
            "CORS_ALLOWED_ORIGINS: '*' is refused when CORS_ALLOW_CREDENTIALS is on",
        ),
        (
            {"CORS_ALLOWED_ORIGINS": "app.example.com"},
            "CORS_ALLOWED_ORIGINS: 'app.example.com' is not an origin such as https://app.example.com",
        ),
        (
            {"RATE_LIMIT_PRESIGN": "lots"},
            "RATE_LIMIT_PRESIGN: expected a rate such as 120/minute, got 'lots'",
        ),
        (
            {"RATE_LIMIT_STORAGE_URI": "mysql://x"},
            "RATE_LIMIT_STORAGE_URI: expected memory:// or a redis:// URL",
        ),
        (
            {"ALLOWED_CONTENT_TYPES": "image/*, nonsense"},
            "ALLOWED_CONTENT_TYPES: not media types or patterns like image/*: 'nonsense'",
        ),
        ({"MAX_UPLOAD_BYTES": "lots"}, "MAX_UPLOAD_BYTES: expected a whole number, got 'lots'"),
    ],
)
def test_start_up_refuses_bad_browser_and_limit_settings(env: dict[str, str], problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(
            {"DATABASE_URL": "postgresql://localhost/x", "AUTH_MODE": "dev", "APP_ENV": "test", **env}
        )
    assert caught.value.problems == [problem]


def test_config_write_once_is_on_for_s3_and_r2_and_off_for_b2_unless_set() -> None:
    providers = load_settings({**DB, **S3, **R2, **B2}).providers
    assert [providers[name].write_once for name in ("s3", "r2", "b2")] == [True, True, False]
    switched = load_settings({**DB, **S3, **B2, "S3_WRITE_ONCE": "off", "B2_WRITE_ONCE": "on"}).providers
    assert [switched[name].write_once for name in ("s3", "b2")] == [False, True]


@pytest.mark.parametrize("name", ["S3_WRITE_ONCE", "R2_WRITE_ONCE", "B2_WRITE_ONCE"])
def test_config_write_once_switches_are_checked(name: str) -> None:
    assert problems_of({**DB, name: "maybe"}) == [f"{name}: expected on or off, got 'maybe'"]


WHSEC = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # base64 of 24 bytes, as the spec's example


def test_webhooks_need_a_secret_in_the_standard_form_and_http_urls() -> None:
    assert problems_of({**DB, "WEBHOOK_URLS": "https://hooks.example.com/a"}) == [
        "WEBHOOK_SECRET: required with WEBHOOK_URLS (whsec_ followed by base64 of 24 to 64 bytes)"
    ]
    for bad in ("not-prefixed", "whsec_!!!", "whsec_" + "QUJD"):  # not base64; 3 bytes
        assert problems_of({**DB, "WEBHOOK_URLS": "https://h.example/a", "WEBHOOK_SECRET": bad}) == [
            "WEBHOOK_SECRET: expected whsec_ followed by base64 of 24 to 64 random bytes"
        ]
    assert problems_of(
        {**DB, "WEBHOOK_URLS": "https://h.example/a, ftp://user:pw@h/x", "WEBHOOK_SECRET": WHSEC}
    ) == ["WEBHOOK_URLS: entry 2 is not an http(s) URL"]
    settings = load_settings(
        {**DB, "WEBHOOK_URLS": " https://a.example/h ,http://b.example/h,", "WEBHOOK_SECRET": WHSEC}
    )
    assert settings.webhook_urls == ("https://a.example/h", "http://b.example/h")
    assert settings.events_enabled
    assert not load_settings(DB).events_enabled


def test_quotas_are_enforced_once_a_default_is_set_or_when_asked() -> None:
    assert not load_settings(DB).quotas_enforced
    settings = load_settings({**DB, "QUOTA_FILES_PER_USER": "100"})
    assert settings.quotas_enforced and settings.quotas.files == 100 and settings.quotas.bytes is None
    assert load_settings({**DB, "QUOTAS": "on"}).quotas_enforced  # per-user overrides only
    assert not load_settings({**DB, "QUOTA_BYTES_PER_USER": "5", "QUOTAS": "off"}).quotas_enforced
    assert problems_of({**DB, "QUOTA_BYTES_PER_USER": "10GB", "QUOTA_UNSAVED_UPLOADS_PER_USER": "-1"}) == [
        "QUOTA_BYTES_PER_USER: expected a whole number, got '10GB'",
        "QUOTA_UNSAVED_UPLOADS_PER_USER: must be between 0 and 4611686018427387904, got -1",
    ]

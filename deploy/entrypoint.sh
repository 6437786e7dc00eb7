#!/bin/sh
# Start the service as the container does: migrations first when asked
# (advisory-locked, so replicas may start together), then gunicorn, exec'd so
# that SIGTERM reaches it and in-flight requests finish before it exits.
set -eu
cd "$(dirname "$0")/.."
if [ "${RUN_MIGRATIONS:-0}" = "1" ]; then
    flask --app app db upgrade
fi
exec gunicorn --config deploy/gunicorn.conf.py "app:create_app()"

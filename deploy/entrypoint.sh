#!/bin/sh
# Start the service as the container does: migrations first when asked
# (advisory-locked, so replicas may start together), then the server, exec'd
# so that SIGTERM reaches it and in-flight requests finish before it exits.
# SERVER picks it: granian (the default, deploy/granian_server.py) or gunicorn
# (deploy/gunicorn.conf.py); the README's "Which server" says why.
set -eu
cd "$(dirname "$0")/.."
if [ "${RUN_MIGRATIONS:-0}" = "1" ]; then
    flask --app app db upgrade
fi
case "${SERVER:-granian}" in
    granian) exec python -m deploy.granian_server ;;
    gunicorn) exec gunicorn --config deploy/gunicorn.conf.py "app:create_app()" ;;
    *)
        echo "invalid configuration: SERVER: must be granian or gunicorn, got '${SERVER}'" >&2
        exit 1
        ;;
esac

"""How the image serves the app: its entrypoint, its servers (granian, gunicorn) and their metrics.

Importing this package readies Prometheus's multi-process mode when
METRICS_PORT is set (``metrics.prepare_multiprocess_dir``): it must happen
before anything imports ``prometheus_client``, and both servers' main
processes import the app (which does) before they fork their workers.
"""

from .metrics import prepare_multiprocess_dir

prepare_multiprocess_dir()

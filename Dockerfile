# The upload service: granian serving app:create_app on port 3000 (SERVER=gunicorn: gunicorn instead).
# Build: docker build -t upload-service .
# Run:   docker run -p 3000:3000 --env-file .env upload-service

# The upload page's browser code: Uppy's prebuilt bundle, from the npm registry.
FROM node:20-slim AS page-assets
WORKDIR /build
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund

FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    APP_ENV=production \
    PORT=3000

WORKDIR /srv

# libmagic: save-metadata identifies each upload's bytes with it (python-magic).
# Its version decides what is recognised: it is the base image's Debian release's own.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends libmagic1 \
    && rm -rf /var/lib/apt/lists/*

# Dependencies in their own layer: rebuilt only when requirements change.
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt

COPY --from=page-assets /build/node_modules/uppy/dist ./node_modules/uppy/dist
COPY app ./app
COPY migrations ./migrations
COPY deploy ./deploy

RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin appuser
USER 10001

EXPOSE 3000
# Liveness only (no I/O); orchestrators should probe /readyz for readiness.
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('PORT', '3000') + '/healthz', timeout=2)"]

# Migrations: run `flask --app app db upgrade` as a release step, or set RUN_MIGRATIONS=1.
ENTRYPOINT ["/srv/deploy/entrypoint.sh"]

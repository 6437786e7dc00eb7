# The upload service: gunicorn serving app:create_app() on port 3000.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /srv

# Dependencies in their own layer: rebuilt only when requirements change.
COPY requirements.txt .
RUN pip install -r requirements.txt

COPY app ./app
COPY migrations ./migrations

RUN useradd --system --uid 10001 --no-create-home appuser
USER appuser

EXPOSE 3000
# Apply migrations first with: docker run ... flask --app app db upgrade
# DB_POOL_SIZE should equal GUNICORN_THREADS.
CMD ["sh", "-c", "exec gunicorn --bind 0.0.0.0:${PORT:-3000} --workers ${WEB_CONCURRENCY:-2} --threads ${GUNICORN_THREADS:-4} 'app:create_app()'"]

# FieldSync server image: pinned dependencies, non-root, migrates then serves on $PORT.
FROM python:3.11-slim AS base

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PORT=8000 \
    FIELDSYNC_ENV=production \
    FIELDSYNC_DATABASE_URL=sqlite+aiosqlite:////srv/fieldsync/data/fieldsync.db

WORKDIR /srv/fieldsync

COPY requirements.lock ./
RUN python -m pip install --require-hashes --no-deps -r requirements.lock

COPY pyproject.toml README.md alembic.ini ./
COPY alembic ./alembic
COPY app ./app
COPY docs ./docs
# Editable, so Alembic finds ./alembic next to ./app.
RUN python -m pip install --no-deps -e . \
    && useradd --system --uid 10001 --home-dir /srv/fieldsync fieldsync \
    && mkdir -p /srv/fieldsync/data && chown fieldsync /srv/fieldsync/data

USER fieldsync
EXPOSE 8000

HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD python -c "import os, urllib.request; urllib.request.urlopen(f'http://127.0.0.1:{os.environ[\"PORT\"]}/healthz', timeout=4)"

# FIELDSYNC_SECRET_KEY must be provided at run time; set FIELDSYNC_DATABASE_URL to PostgreSQL
# (postgresql+asyncpg://...) in production.
CMD ["sh", "-c", "fieldsync migrate && exec fieldsync serve --host 0.0.0.0 --port \"$PORT\" --workers \"${WEB_CONCURRENCY:-2}\""]

FROM python:3.11-slim AS base

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    LARKAUTH_VAR_DIR=/app/var DJANGO_DEBUG=false LOG_FORMAT=json

WORKDIR /app
COPY pyproject.toml README.md ./
COPY larkauth larkauth
COPY sessions_app sessions_app
COPY events_app events_app
COPY config config
RUN pip install . && useradd --system --uid 10001 --home /app larkauth
COPY manage.py ./
COPY templates templates
# The static files (the admin's CSS) into STATIC_ROOT (var/static), where WhiteNoise serves
# them from gunicorn. Throwaway keys: only to pass settings at build time.
RUN mkdir -p var && DJANGO_SECRET_KEY=build LARKAUTH_ENCRYPTION_KEYS=$(python -c "import base64,os;print(base64.urlsafe_b64encode(os.urandom(32)).decode())") \
    python manage.py collectstatic --noinput && chown -R larkauth /app/var

USER larkauth
EXPOSE 8000
# Bind ($PORT), workers, threads and logging: config/gunicorn.py.
CMD ["gunicorn", "-c", "config/gunicorn.py", "config.wsgi"]

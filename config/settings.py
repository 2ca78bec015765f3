"""One settings module, driven by the environment (a `.env` file is read when present).

Defaults need no server: SQLite under `var/`, an embedded Celery broker. `DJANGO_DEBUG` is
false unless set: development (`make run`, the tests) sets it to true, which also creates a
development encryption key under `var/`. Values that cannot be parsed do not raise here:
they are collected in `SETTINGS_ERRORS` and reported by the system checks in
`sessions_app.checks`, so a bad setting is a message naming it, not a stack trace.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import environ

from larkauth import domains
from larkauth.logformat import FILTERS, FORMATTERS
from larkauth.logformat import handler as log_handler

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("LARKAUTH_VAR_DIR", BASE_DIR / "var"))
VAR_DIR.mkdir(parents=True, exist_ok=True)

env = environ.Env()
if (BASE_DIR / ".env").is_file():
    env.read_env(BASE_DIR / ".env", overwrite=False)

SETTINGS_ERRORS: list[tuple[str, str]] = []


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default).strip()


def env_bool(name: str, default: bool) -> bool:
    raw = env_str(name)
    if not raw:
        return default
    if raw.lower() in {"1", "true", "yes", "on"}:
        return True
    if raw.lower() in {"0", "false", "no", "off"}:
        return False
    SETTINGS_ERRORS.append((name, f"{name} must be true or false, got {raw!r}."))
    return default


def env_int(name: str, default: int) -> int:
    raw = env_str(name)
    try:
        return int(raw) if raw else default
    except ValueError:
        SETTINGS_ERRORS.append((name, f"{name} must be a whole number, got {raw!r}."))
        return default


def env_float(name: str, default: float) -> float:
    raw = env_str(name)
    try:
        return float(raw) if raw else default
    except ValueError:
        SETTINGS_ERRORS.append((name, f"{name} must be a number, got {raw!r}."))
        return default


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in env_str(name, default).split(",") if item.strip()]


# --- Django core -------------------------------------------------------------------------

# Off unless asked for: a deployment that forgets it must not show tracebacks with locals.
DEBUG = env_bool("DJANGO_DEBUG", False)
SECRET_KEY = env_str("DJANGO_SECRET_KEY") or "dev-only-insecure-secret-key-change-me"
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost,testserver")
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "larkauth.admin_site.LarkauthAdminConfig",  # django.contrib.admin, titled for larkauth
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_prometheus",
    "rest_framework",
    "rest_framework_api_key",
    "drf_spectacular",
    "django_celery_beat",
    "larkauth",
    "sessions_app",
    "events_app",
]

MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "larkauth.requestid.RequestIdMiddleware",
    "sessions_app.api.middleware.ApiEdgeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Static files (the admin's CSS) from STATIC_ROOT, with DEBUG off too: no other server.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
    "config.middleware.UnavailableMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": env.db_url_config(
        env_str("DATABASE_URL") or f"sqlite:///{VAR_DIR / 'larkauth.sqlite3'}"
    )
}
DATABASES["default"].setdefault("CONN_MAX_AGE", 60)
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    # An unreachable server fails a request in seconds (a 503, config/middleware.py), not
    # after the OS's TCP timeout (minutes) or never (a server that accepts and does not
    # answer). `?connect_timeout=N` in DATABASE_URL overrides it.
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault("connect_timeout", 5)
else:
    # Several processes share the development SQLite file: wait for locks, don't fail.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"timeout": 20, "transaction_mode": "IMMEDIATE"}
    )
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE", "Asia/Shanghai")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"  # filled by `collectstatic` (the Dockerfile runs it)
STATIC_ROOT.mkdir(exist_ok=True)  # WhiteNoise warns on every start while it is missing

SESSION_COOKIE_SECURE = not DEBUG
CSRF_COOKIE_SECURE = not DEBUG
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# --- Redis, cache, Celery ----------------------------------------------------------------

REDIS_URL = env_str("REDIS_URL")

CACHES: dict[str, Any] = {
    "default": (
        {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}
        if REDIS_URL
        else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    )
}

CELERY_BROKER_URL = env_str("CELERY_BROKER_URL") or (REDIS_URL or "filesystem://")
# Redis hands an unacknowledged task (acks_late) to another worker after this long: longer
# than any task's time limit, or a slow run would be started twice.
CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, Any] = {
    "visibility_timeout": 2 * 60 * 60,
    # A broker that is down or stops answering fails a publish (a task enqueued by a web
    # request) within seconds: without these a hung Redis holds the caller forever.
    "socket_connect_timeout": 2,
    "socket_timeout": 2,
}
CELERY_BROKER_CONNECTION_TIMEOUT = 2
# One quick retry, not Celery's default of three: the caller decides what a failed enqueue
# means (see README: What happens when…).
CELERY_TASK_PUBLISH_RETRY_POLICY = {
    "max_retries": 1,
    "interval_start": 0,
    "interval_step": 0.2,
    "interval_max": 0.2,
}
if CELERY_BROKER_URL == "filesystem://":
    # The embedded development broker: queues are folders under var/, no server needed.
    _queue_dir = VAR_DIR / "celery-broker"
    _queue_dir.mkdir(exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_queue_dir),
        "data_folder_out": str(_queue_dir),
        "control_folder": str(_queue_dir / "control"),  # else ./control in the working dir
    }
# Which queue tasks go to (workers: `-Q`). Eager runs every task in the process that
# queues it: for tests and single-process development only.
CELERY_TASK_DEFAULT_QUEUE = env_str("CELERY_TASK_DEFAULT_QUEUE", "celery")
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = 300
CELERY_TASK_SOFT_TIME_LIMIT = 240
CELERY_TIMEZONE = TIME_ZONE
# Schedules live in the database (admin-editable); defaults: sessions_app.services.schedules.
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Workers log through LOGGING above (JSON, redaction) rather than Celery's own handler.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False

# --- Feishu / Lark -----------------------------------------------------------------------

LARK_APP_ID = env_str("LARK_APP_ID")
LARK_APP_SECRET = env_str("LARK_APP_SECRET")
LARK_DOMAIN = env_str("LARK_DOMAIN", "https://open.feishu.cn").rstrip("/")
LARK_ACCOUNTS_DOMAIN = env_str("LARK_ACCOUNTS_DOMAIN").rstrip("/") or domains.accounts_for(
    LARK_DOMAIN
)
LARK_ENCRYPT_KEY = env_str("LARK_ENCRYPT_KEY")
LARK_VERIFICATION_TOKEN = env_str("LARK_VERIFICATION_TOKEN")
LARKAUTH_PUBLIC_URL = env_str("LARKAUTH_PUBLIC_URL", "http://127.0.0.1:8000").rstrip("/")
FEISHU_HTTP_TIMEOUT = env_float("FEISHU_HTTP_TIMEOUT", 10.0)
FEISHU_RATE_LIMIT_PER_SECOND = env_int("FEISHU_RATE_LIMIT_PER_SECOND", 40)

# First key encrypts, every key decrypts. Independent of SECRET_KEY on purpose: rotating
# one must never make stored tokens unreadable.
LARKAUTH_ENCRYPTION_KEYS = env_list("LARKAUTH_ENCRYPTION_KEYS")
if not LARKAUTH_ENCRYPTION_KEYS and DEBUG:
    # Development only: one key per checkout, created once even when several processes
    # (web, worker, listener) start at the same moment.
    _dev_key_file = VAR_DIR / "dev-encryption-key"
    if not _dev_key_file.exists():
        import base64
        import tempfile

        with tempfile.NamedTemporaryFile("w", dir=VAR_DIR, delete=False) as _tmp:
            _tmp.write(base64.urlsafe_b64encode(os.urandom(32)).decode())
        os.chmod(_tmp.name, 0o600)
        try:
            os.link(_tmp.name, _dev_key_file)  # atomic: fails if another process won
        except FileExistsError:
            pass
        finally:
            os.unlink(_tmp.name)
    LARKAUTH_ENCRYPTION_KEYS = [_dev_key_file.read_text().strip()]

# --- Authorization behaviour -------------------------------------------------------------

AUTH_SESSION_EXPIRY_SECONDS = env_int("AUTH_SESSION_EXPIRY_SECONDS", 600)
AUTH_TOKEN_REFRESH_THRESHOLD = env_float("AUTH_TOKEN_REFRESH_THRESHOLD", 0.8)
AUTH_REQUEST_RATE_LIMIT = env_int("AUTH_REQUEST_RATE_LIMIT", 5)
AUTH_CARD_INCLUDE_DESCRIPTION = env_bool("AUTH_CARD_INCLUDE_DESCRIPTION", True)
AUTH_CARD_TEMPLATE_ID = env_str("AUTH_CARD_TEMPLATE_ID")
AUTH_REAUTH_CARD_INTERVAL = env_int("AUTH_REAUTH_CARD_INTERVAL", 86400)
AUTH_SESSION_RETENTION_DAYS = env_int("AUTH_SESSION_RETENTION_DAYS", 30)
AUTH_KEEPALIVE_MARGIN = env_int("AUTH_KEEPALIVE_MARGIN", 172800)
AUTH_WARM_WINDOW = env_int("AUTH_WARM_WINDOW", 86400)
AUTH_SCOPES = env_str("AUTH_SCOPES", "offline_access")
USER_INFO_SYNC_ENABLED = env_bool("USER_INFO_SYNC_ENABLED", False)
USER_INFO_SYNC_SCHEDULE = env_str("USER_INFO_SYNC_SCHEDULE", "0 2 * * *")
WEBSOCKET_MAX_RECONNECT_RETRIES = env_int("WEBSOCKET_MAX_RECONNECT_RETRIES", 10)
WEBSOCKET_HEARTBEAT_INTERVAL = env_int("WEBSOCKET_HEARTBEAT_INTERVAL", 30)
WEBSOCKET_FALLBACK_TO_HTTP = env_bool("WEBSOCKET_FALLBACK_TO_HTTP", True)
# How often a listener serving every active application looks for added, changed or
# deactivated ones.
WEBSOCKET_APPS_RESCAN_SECONDS = env_int("WEBSOCKET_APPS_RESCAN_SECONDS", 30)

# --- REST API ----------------------------------------------------------------------------

# Token requests with `wait` that may long-poll at once, per web process: keep it below the
# process's threads (config/gunicorn.py) so other requests always find one free.
TOKEN_WAIT_SLOTS = env_int("TOKEN_WAIT_SLOTS", 4)

REST_FRAMEWORK = {
    # A JSON API: other bodies are a 415, other Accept values a 406.
    "DEFAULT_PARSER_CLASSES": ["sessions_app.api.parsers.BoundedJSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": ["sessions_app.api.permissions.HasServiceKey"],
    "DEFAULT_SCHEMA_CLASS": "sessions_app.api.schema.ApiSchema",
    "EXCEPTION_HANDLER": "sessions_app.api.errors.exception_handler",
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "larkauth API",
    "DESCRIPTION": "Feishu/Lark user access tokens for internal services.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
}

# --- Metrics -----------------------------------------------------------------------------

# When set, `/metrics` (and a container's metrics exporter) answer only requests with
# `Authorization: Bearer <this>`: a scrape runs database counts.
METRICS_TOKEN = env_str("METRICS_TOKEN")

# --- Logging -----------------------------------------------------------------------------

LOG_LEVEL = env_str("LOG_LEVEL", "INFO").upper()
if LOG_LEVEL not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
    SETTINGS_ERRORS.append(
        (
            "LOG_LEVEL",
            f"LOG_LEVEL must be DEBUG, INFO, WARNING, ERROR or CRITICAL, got {LOG_LEVEL!r}.",
        )
    )
    LOG_LEVEL = "INFO"
LOG_FORMAT = env_str("LOG_FORMAT", "console").lower()
LOG_LEVEL_CELERY = env_str("LOG_LEVEL_CELERY", "WARNING").upper()
if LOG_LEVEL_CELERY not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
    SETTINGS_ERRORS.append(
        (
            "LOG_LEVEL_CELERY",
            "LOG_LEVEL_CELERY must be DEBUG, INFO, WARNING, ERROR or CRITICAL, got "
            f"{LOG_LEVEL_CELERY!r}.",
        )
    )
    LOG_LEVEL_CELERY = "WARNING"
LOGGING: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": FILTERS,
    "formatters": FORMATTERS,
    "handlers": {"stderr": log_handler(LOG_FORMAT)},
    "root": {"handlers": ["stderr"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "INFO"},
        # Celery's own lines ("Task … received/succeeded", beat's "Sending due task", the
        # worker's start-up) come once per run of every periodic task: at WARNING a run that
        # does nothing is silent at INFO. Our jobs log what they did; Celery's warnings and
        # errors (failures, retries, lost workers) still show. LOG_LEVEL_CELERY=INFO brings
        # its lines back (the suite's worker tests read them).
        "celery": {"level": LOG_LEVEL_CELERY},
    },
}

"""gunicorn in production (the Dockerfile's CMD): `gunicorn -c config/gunicorn.py config.wsgi`.

From the environment: `PORT` (8000; binds 0.0.0.0), `GUNICORN_WORKERS` (4),
`GUNICORN_THREADS` (8), `LOG_FORMAT` and `LOG_LEVEL` as for the rest of larkauth.

Every line gunicorn writes passes larkauth's redaction filter, in the format of
`settings.LOGGING` (one JSON object per line with `LOG_FORMAT=json`): its own messages on
stderr, the access log on stdout, one line per request, with the values of secret query
parameters (the OAuth callback's `code` and `state`) and the referer's masked.

gunicorn reads this file before Django is set up: only `larkauth.logformat`, which needs
nothing else, is imported; the logging classes are named as strings, resolved later.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from larkauth.logformat import FILTERS, FORMATTERS, handler


def _positive_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip() or str(default)
    if not raw.isdigit() or int(raw) < 1:
        raise SystemExit(f"{name} must be a whole number of at least 1, got {raw!r}.")
    return int(raw)


bind = [f"0.0.0.0:{_positive_int('PORT', 8000)}"]
workers = _positive_int("GUNICORN_WORKERS", 4)
# Threads wait on PostgreSQL, Redis and Feishu more than they compute. Up to
# TOKEN_WAIT_SLOTS (4) of them may block in a token request's `wait`: the others keep
# answering health checks and token reads.
threads = _positive_int("GUNICORN_THREADS", 8)
# Unused, and its default path ($HOME/.gunicorn/gunicorn.ctl) is one per user, not per server.
control_socket_disable = True

# The time, level and request id are fields of the line itself.
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(M)sms "%(f)s" "%(a)s"'


class AccessRequestIdFilter(logging.Filter):
    """An access line's request id: the `X-Request-ID` larkauth answered with."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, Mapping):  # gunicorn's atoms
            record.request_id = record.args.get("{x-request-id}o", "-")
        return True


_FORMAT = os.environ.get("LOG_FORMAT", "").strip().lower()
# A bad LOG_LEVEL is reported by larkauth's system checks; gunicorn keeps to INFO then.
_LEVEL = os.environ.get("LOG_LEVEL", "").strip().upper()
_LEVEL = _LEVEL if _LEVEL in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"} else "INFO"
logconfig_dict: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"access_request_id": {"()": AccessRequestIdFilter}, **FILTERS},
    "formatters": FORMATTERS,
    "handlers": {
        "stderr": handler(_FORMAT),
        "stdout": handler(_FORMAT, "ext://sys.stdout", "access_request_id"),
    },
    "root": {"handlers": ["stderr"], "level": "INFO"},
    "loggers": {
        "gunicorn.error": {"handlers": ["stderr"], "level": _LEVEL, "propagate": False},
        "gunicorn.access": {"handlers": ["stdout"], "level": "INFO", "propagate": False},
    },
}

"""The two log line formats (`LOG_FORMAT`) and the filters every line passes, shared by
settings.LOGGING and gunicorn's config (config/gunicorn.py), which is read before Django is
set up."""

from __future__ import annotations

import logging
import time
from typing import Any

from pythonjsonlogger.json import JsonFormatter


class UTCFormatter(logging.Formatter):
    """Times in UTC, ISO 8601 with milliseconds and `Z`: the same clock in every process,
    whether Django has set the process's time zone to TIME_ZONE yet or not."""

    converter = staticmethod(time.gmtime)
    default_time_format = "%Y-%m-%dT%H:%M:%S"
    default_msec_format = "%s.%03dZ"


class UTCJsonFormatter(UTCFormatter, JsonFormatter):
    pass


FORMATTERS: dict[str, dict[str, Any]] = {
    "json": {
        "()": "larkauth.logformat.UTCJsonFormatter",
        "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s",
        "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
    },
    "console": {
        "()": "larkauth.logformat.UTCFormatter",
        "fmt": "%(asctime)s %(levelname)-7s %(name)s [%(request_id)s] %(message)s",
    },
}

# Every handler: the request id on the line, then secrets redacted.
FILTERS: dict[str, dict[str, Any]] = {
    "request_id": {"()": "larkauth.requestid.RequestIdFilter"},
    "redact": {"()": "larkauth.redaction.RedactionFilter"},
}


def handler(log_format: str, stream: str = "ext://sys.stderr", *first: str) -> dict[str, Any]:
    """A stream handler in `log_format` ("json" or "console") behind `first` (filter names
    run before the shared ones) and FILTERS."""
    return {
        "class": "logging.StreamHandler",
        "stream": stream,
        "formatter": "json" if log_format == "json" else "console",
        "filters": [*first, *FILTERS],
    }

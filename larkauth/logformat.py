"""The two log line formats (`LOG_FORMAT`) and the filters every line passes, shared by
settings.LOGGING and gunicorn's config (config/gunicorn.py), which is read before Django is
set up."""

from __future__ import annotations

from typing import Any

FORMATTERS: dict[str, dict[str, Any]] = {
    "json": {
        "()": "pythonjsonlogger.json.JsonFormatter",
        "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s",
        "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
    },
    "console": {"format": "%(asctime)s %(levelname)-7s %(name)s [%(request_id)s] %(message)s"},
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

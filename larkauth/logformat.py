"""The two log line formats (`LOG_FORMAT`), shared by settings.LOGGING and gunicorn's config
(config/gunicorn.py), which is read before Django is set up."""

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

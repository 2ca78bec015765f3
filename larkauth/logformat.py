"""The two log line formats (`LOG_FORMAT`), shared by settings.LOGGING and gunicorn's config
(config/gunicorn.py), which is read before Django is set up; and the filter that keeps
Celery's own lines about beat jobs out of INFO."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

FORMATTERS: dict[str, dict[str, Any]] = {
    "json": {
        "()": "pythonjsonlogger.json.JsonFormatter",
        "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s",
        "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
    },
    "console": {"format": "%(asctime)s %(levelname)-7s %(name)s [%(request_id)s] %(message)s"},
}


class BeatJobsAtDebug(logging.Filter):
    """Celery's lines about the given tasks (beat's "Sending due task", the worker's
    "received" and "succeeded") at DEBUG: a job that runs every few seconds would otherwise
    log three INFO lines each time with nothing to say. Each job logs its own INFO line
    when it did work (sessions_app.services)."""

    def __init__(self, tasks: Iterable[str] = (), show_debug: bool = False) -> None:
        super().__init__()
        self.tasks = tuple(tasks)
        self.show_debug = show_debug  # LOG_LEVEL is DEBUG

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.INFO:
            return True
        message = record.getMessage()
        if not any(task in message for task in self.tasks):
            return True
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return self.show_debug

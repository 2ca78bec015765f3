"""A periodic run that does nothing says nothing at INFO: Celery's own per-task lines
("Task … succeeded") are at WARNING; our jobs log what they did themselves."""

from __future__ import annotations

import logging

import pytest

from sessions_app import tasks


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.mark.django_db
def test_a_periodic_run_with_nothing_to_do_is_silent_at_info() -> None:
    collect = _Collect()
    root = logging.getLogger()
    root.addHandler(collect)
    try:
        result = tasks.expire_pending_sessions.apply()
    finally:
        root.removeHandler(collect)
    assert result.successful()
    celery_lines = [r.getMessage() for r in collect.records if r.name.startswith("celery")]
    assert celery_lines == []
    assert not logging.getLogger("celery.app.trace").isEnabledFor(logging.INFO)
    assert logging.getLogger("celery.app.trace").isEnabledFor(logging.WARNING)

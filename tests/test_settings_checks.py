"""A bad setting stops `manage.py check` with a message that names it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
GOOD_KEY = "x" * 43 + "="


def _check(tmp_path: Path, **overrides: str) -> subprocess.CompletedProcess[str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("LARK", "AUTH_", "DJANGO_", "LOG_", "USER_INFO", "WEBSOCKET_"))
    }
    env.update({"LARKAUTH_VAR_DIR": str(tmp_path), "DATABASE_URL": f"sqlite:///{tmp_path}/db"})
    env.update(overrides)
    return subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_defaults_pass_in_development(tmp_path: Path) -> None:
    result = _check(tmp_path, DJANGO_DEBUG="true")
    assert result.returncode == 0, result.stderr


def test_it_stops_a_start_that_sets_nothing_as_production_naming_the_secrets(
    tmp_path: Path,
) -> None:
    """DJANGO_DEBUG defaults to false: a deployment that forgets everything does not start."""
    result = _check(tmp_path)
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY must be set" in result.stderr
    assert "LARKAUTH_ENCRYPTION_KEYS is not set" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"DJANGO_DEBUG": "false", "DJANGO_SECRET_KEY": "s" * 50},
            "LARKAUTH_ENCRYPTION_KEYS is not set",
        ),
        ({"LARKAUTH_ENCRYPTION_KEYS": "not-a-key"}, "LARKAUTH_ENCRYPTION_KEYS: key 1 is malformed"),
        (
            {"LARKAUTH_ENCRYPTION_KEYS": f"{GOOD_KEY},short"},
            "LARKAUTH_ENCRYPTION_KEYS: key 2 is malformed",
        ),
        (
            {"AUTH_TOKEN_REFRESH_THRESHOLD": "1.5"},
            "AUTH_TOKEN_REFRESH_THRESHOLD must be between 0 and 1",
        ),
        (
            {"AUTH_TOKEN_REFRESH_THRESHOLD": "0"},
            "AUTH_TOKEN_REFRESH_THRESHOLD must be between 0 and 1",
        ),
        ({"AUTH_TOKEN_REFRESH_THRESHOLD": "most"}, "AUTH_TOKEN_REFRESH_THRESHOLD must be a number"),
        ({"AUTH_SESSION_EXPIRY_SECONDS": "-5"}, "AUTH_SESSION_EXPIRY_SECONDS must be positive"),
        ({"AUTH_REAUTH_CARD_INTERVAL": "-1"}, "AUTH_REAUTH_CARD_INTERVAL must not be negative"),
        ({"LOG_FORMAT": "xml"}, "LOG_FORMAT must be 'json' or 'console'"),
        ({"LOG_LEVEL": "LOUD"}, "LOG_LEVEL must be DEBUG, INFO"),
        ({"USER_INFO_SYNC_ENABLED": "perhaps"}, "USER_INFO_SYNC_ENABLED must be true or false"),
        (
            {"DJANGO_DEBUG": "false", "LARKAUTH_ENCRYPTION_KEYS": GOOD_KEY},
            "DJANGO_SECRET_KEY must be set",
        ),
    ],
)
def test_a_bad_setting_stops_check_naming_it(tmp_path: Path, overrides, message) -> None:
    result = _check(tmp_path, **overrides)
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr

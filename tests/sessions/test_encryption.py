"""Tokens and secrets are encrypted at rest with LARKAUTH_ENCRYPTION_KEYS."""

from __future__ import annotations

from uuid import UUID

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django_cryptography.utils.crypto import InvalidToken

from sessions_app.encryption import generate_key
from sessions_app.models import Application, UserAuthSession
from tests.factories import make_app, make_authorization

ACCESS = "eyJ-sentinel-access-token-3f9a"
REFRESH = "eyJ-sentinel-refresh-token-77c1"
SECRET = "sentinel-app-secret-b5d2"


def _raw_table(table: str) -> bytes:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")  # noqa: S608
        rows = cursor.fetchall()
    return b"".join(
        bytes(value) if isinstance(value, (bytes, memoryview)) else str(value).encode()
        for row in rows
        for value in row
    )


@pytest.fixture
def keys(settings):
    settings.LARKAUTH_ENCRYPTION_KEYS = [generate_key()]
    return settings


@pytest.mark.django_db
def test_it_stores_no_plaintext_token_or_secret(keys) -> None:
    make_authorization(make_app(app_secret=SECRET), access_token=ACCESS, refresh_token=REFRESH)
    sessions = _raw_table("user_auth_sessions")
    apps = _raw_table(Application._meta.db_table)
    for sentinel in (ACCESS, REFRESH):
        assert sentinel.encode() not in sessions
    assert SECRET.encode() not in apps
    stored = UserAuthSession.objects.get()
    assert (stored.access_token, stored.refresh_token) == (ACCESS, REFRESH)


@pytest.mark.django_db
def test_it_does_not_depend_on_the_secret_key(keys) -> None:
    make_authorization(make_app(), access_token=ACCESS)
    keys.SECRET_KEY = "a-completely-different-secret-key"
    assert UserAuthSession.objects.get().access_token == ACCESS


@pytest.mark.django_db
def test_it_reads_old_values_after_a_new_key_is_put_first(keys) -> None:
    old_key = keys.LARKAUTH_ENCRYPTION_KEYS[0]
    make_authorization(make_app(), access_token=ACCESS)
    keys.LARKAUTH_ENCRYPTION_KEYS = [generate_key(), old_key]
    assert UserAuthSession.objects.get().access_token == ACCESS


@pytest.mark.django_db
def test_it_refuses_to_read_without_the_right_key(keys) -> None:
    make_authorization(make_app(), access_token=ACCESS)
    keys.LARKAUTH_ENCRYPTION_KEYS = [generate_key()]
    with pytest.raises(InvalidToken):
        UserAuthSession.objects.get()


@pytest.mark.django_db
def test_rotation_leaves_nothing_readable_only_by_the_old_key(keys, capsys) -> None:
    old_key = keys.LARKAUTH_ENCRYPTION_KEYS[0]
    app = make_app(app_secret=SECRET, encrypt_key="ek", verification_token="vt")
    for n in range(7):
        make_authorization(app, access_token=f"{ACCESS}-{n}", refresh_token=f"{REFRESH}-{n}")
    new_key = generate_key()
    keys.LARKAUTH_ENCRYPTION_KEYS = [new_key, old_key]

    call_command("rotate_encryption_key", "--batch-size", "3")
    assert "re-encrypted 17 values" in capsys.readouterr().out

    keys.LARKAUTH_ENCRYPTION_KEYS = [new_key]  # the old key is gone
    tokens = sorted(str(t) for t in UserAuthSession.objects.values_list("access_token", flat=True))
    assert tokens == [f"{ACCESS}-{n}" for n in range(7)]
    assert Application.objects.get().app_secret == SECRET

    keys.LARKAUTH_ENCRYPTION_KEYS = [new_key, old_key]
    call_command("rotate_encryption_key")
    assert "re-encrypted 0 values" in capsys.readouterr().out


@pytest.mark.django_db
def test_rotation_skips_values_no_key_decrypts_reports_them_and_rotates_the_rest(
    keys, capsys, caplog
) -> None:
    old_key = keys.LARKAUTH_ENCRYPTION_KEYS[0]
    app = make_app(app_secret=SECRET, encrypt_key="ek")
    # First in the rotation's order; its refresh token was written under a key since dropped.
    lost = make_authorization(app, id=UUID(int=1), access_token=ACCESS)
    keys.LARKAUTH_ENCRYPTION_KEYS = [generate_key()]
    UserAuthSession.objects.filter(pk=lost.pk).update(refresh_token="eyJ-gone-with-its-key")
    keys.LARKAUTH_ENCRYPTION_KEYS = [old_key]
    others = [make_authorization(app, access_token=f"{ACCESS}-{n}") for n in range(3)]
    with connection.cursor() as cursor:  # a damaged column
        cursor.execute(
            f"UPDATE {Application._meta.db_table} SET encrypt_key = %s WHERE id = %s",  # noqa: S608
            [b"not a ciphertext", app.pk],
        )
    new_key = generate_key()
    keys.LARKAUTH_ENCRYPTION_KEYS = [new_key, old_key]

    with pytest.raises(CommandError, match="2 values could not be decrypted"):
        call_command("rotate_encryption_key", "--batch-size", "2")

    out = capsys.readouterr().out
    assert f"sessions_app.Application {app.pk} encrypt_key" in out
    assert f"sessions_app.UserAuthSession {lost.pk} refresh_token" in out
    assert "eyJ-gone" not in out + caplog.text
    assert "not a ciphertext" not in out + caplog.text
    keys.LARKAUTH_ENCRYPTION_KEYS = [new_key]  # everything else is readable by the new key
    assert Application.objects.only("app_secret").get().app_secret == SECRET
    for n, other in enumerate(others):
        assert UserAuthSession.objects.get(pk=other.pk).access_token == f"{ACCESS}-{n}"
    lost_now = UserAuthSession.objects.only("access_token", "failure_reason").get(pk=lost.pk)
    assert (lost_now.access_token, lost_now.failure_reason) == (
        ACCESS,
        "undecryptable:authorization",
    )

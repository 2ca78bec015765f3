"""The named constraints of the earlier system, enforced by PostgreSQL itself."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, connection, transaction

from sessions_app.models import SessionState, UserAuthSession
from tests.factories import make_app, make_authorization, make_pending

pytestmark = pytest.mark.usefixtures("postgres")


def _violates(constraint: str, **fields: object) -> None:
    app = make_app()
    with pytest.raises(IntegrityError, match=constraint), transaction.atomic():
        UserAuthSession.objects.create(app=app, **fields)


def test_it_rejects_an_unknown_auth_method() -> None:
    _violates("ck_auth_method_valid", open_id="ou_1", auth_method="pigeon")


def test_it_rejects_an_unknown_state() -> None:
    _violates("ck_state_valid", open_id="ou_1", state="halfdone")


def test_it_rejects_a_session_without_user_id_or_open_id() -> None:
    _violates("ck_user_id_or_open_id", open_id="", user_id="")


def test_it_rejects_a_completed_session_without_tokens() -> None:
    _violates("ck_token_data_present", open_id="ou_1", state=SessionState.COMPLETED)


def test_it_accepts_a_session_with_user_id_only() -> None:
    app = make_app()
    make_pending(app, open_id="", user_id="u-only")
    assert UserAuthSession.objects.filter(user_id="u-only").count() == 1


def test_it_allows_a_pending_session_beside_the_completed_authorization() -> None:
    authorization = make_authorization(make_app())
    make_pending(authorization.app, open_id=authorization.open_id)
    assert UserAuthSession.objects.filter(open_id=authorization.open_id).count() == 2


def test_it_rejects_a_second_completed_authorization_for_the_same_user() -> None:
    first = make_authorization(make_app())
    with pytest.raises(IntegrityError, match="uq_auth_session_one_completed"), transaction.atomic():
        make_authorization(first.app, open_id=first.open_id)
    # The same user in another application is another authorization.
    make_authorization(make_app(), open_id=first.open_id)


def test_the_named_indexes_exist() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'user_auth_sessions'")
        names = {row[0] for row in cursor.fetchall()}
    assert {
        "idx_auth_session_user",
        "idx_auth_session_token_expires",
        "idx_auth_session_open_id",
    } <= names

"""FeishuError: what is worth retrying, what needs the user, and a text free of secrets."""

from __future__ import annotations

import pickle

import pytest

from larkauth.errors import FeishuError, LarkauthError


@pytest.mark.parametrize(
    ("code", "http_status", "retryable"),
    [
        (None, 500, True),
        (None, 503, True),
        (None, 429, True),
        (99991400, 400, True),
        (99991402, 200, True),
        (11020, 200, True),
        (11021, 200, True),
        (20050, 500, True),
        (20072, 503, True),
        (20037, 400, False),
        (20064, 400, False),
        (20073, 400, False),
        (20026, 400, False),
        (20024, 400, False),
        (20003, 400, False),
        (20004, 400, False),
        (20065, 400, False),
        (20049, 400, False),
        (20071, 400, False),
        (20002, 400, False),
        (10003, 400, False),
        (230002, 400, False),
        (20073, 500, False),  # a definite answer stays final whatever the status
        (None, 400, False),
        (None, None, False),
    ],
)
def test_it_classifies_codes_and_statuses(code, http_status, retryable):
    error = FeishuError("failed", api="oauth_refresh", code=code, http_status=http_status)
    assert error.retryable is retryable
    assert error.permanent is not retryable


def test_transport_failures_are_retryable_when_said_so():
    assert FeishuError("timed out", api="user_info", retryable=True).retryable


@pytest.mark.parametrize("code", [20037, 20064, 20073, 20026, 20024, 99991668, 99991677])
def test_dead_refresh_tokens_and_rejected_user_tokens_need_reauthorization(code):
    error = FeishuError("x", api="oauth_refresh", code=code, http_status=400)
    assert error.needs_reauthorization
    assert not error.code_dead


@pytest.mark.parametrize("code", [20003, 20004, 20065, 20049, 20071])
def test_dead_codes_restart_the_authorization(code):
    error = FeishuError("x", api="oauth_code_exchange", code=code, http_status=400)
    assert error.code_dead
    assert not error.needs_reauthorization


@pytest.mark.parametrize("code", [20050, 20002, None])
def test_other_errors_need_neither(code):
    error = FeishuError("x", api="oauth_refresh", code=code, http_status=500)
    assert not error.code_dead
    assert not error.needs_reauthorization


def test_its_text_names_the_call_and_ids_but_no_secret():
    error = FeishuError(
        "invalid code Zq9CodeSentinel0123456789abcdef, refresh_token=ur-Zq9Sentinel01234567890",
        api="oauth_code_exchange",
        code=20003,
        http_status=400,
        log_id="20260120093000ABCDEF",
    )
    text = str(error)
    assert "Zq9" not in text
    assert "Zq9" not in repr(error)
    assert text.startswith("oauth_code_exchange: ")
    assert "code=20003" in text
    assert "log_id=20260120093000ABCDEF" in text
    assert "permanent" in text


def test_it_survives_pickling():
    error = FeishuError("x", api="message_patch", code=99991400, http_status=429, log_id="L1")
    copy = pickle.loads(pickle.dumps(error))  # noqa: S301 - our own data
    assert (copy.api, copy.code, copy.http_status, copy.log_id, copy.retryable) == (
        "message_patch",
        99991400,
        429,
        "L1",
        True,
    )
    assert isinstance(copy, LarkauthError)

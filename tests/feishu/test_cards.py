"""The authorization card and its later states: the structure Feishu and our handlers rely on."""

from __future__ import annotations

import html
import json
import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest
from markdown_it import MarkdownIt

from larkauth import cards

SESSION = "3f2b9c1e-0d4a-4e59-9a51-6b1d2f7c8e90"
START_URL = cards.oauth_start_url("https://auth.example.com/", SESSION)


def _buttons(card: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for e in card["body"]["elements"] if e["tag"] == "button"]


def _callback_values(card: dict[str, Any]) -> list[Any]:
    return [
        behavior["value"]
        for button in _buttons(card)
        for behavior in button["behaviors"]
        if behavior["type"] == "callback"
    ]


def _text(card: dict[str, Any]) -> str:
    return json.dumps(card, ensure_ascii=False)


# Standard markdown with HTML, bare-URL links and strikethrough, as Card JSON 2.0 reads it.
_MARKDOWN = MarkdownIt("commonmark", {"linkify": True}).enable(["linkify", "strikethrough"])
_TAG = re.compile(r"<[^>]*>")


def _rendered(card: dict[str, Any]) -> str:
    """The card's markdown elements as a reader's client renders them (HTML)."""
    return "".join(
        _MARKDOWN.render(e["content"]) for e in card["body"]["elements"] if e["tag"] == "markdown"
    )


def _shown(card: dict[str, Any]) -> str:
    """What the reader sees: the rendered text without markup."""
    return html.unescape(_TAG.sub("", _rendered(card)))


ALL_BUILT_IN = [
    pytest.param(cards.authorization_request(SESSION, start_url=START_URL), id="request"),
    pytest.param(
        cards.authorization_request(
            SESSION, start_url=START_URL, reason=cards.ReauthReason.REVOKED
        ),
        id="reauth",
    ),
    pytest.param(cards.authorized("Li Lei", datetime(2026, 1, 20, 9, 30)), id="authorized"),
    pytest.param(cards.declined(SESSION), id="declined"),
    pytest.param(cards.expired(SESSION), id="expired"),
    pytest.param(cards.failed(SESSION, "Feishu is unavailable"), id="failed"),
    pytest.param(cards.wrong_user(SESSION), id="wrong-user"),
]


@pytest.mark.parametrize("card", ALL_BUILT_IN)
def test_it_builds_shared_json2_cards_that_fit(card: dict[str, Any]):
    assert card["schema"] == "2.0"
    assert card["config"]["update_multi"] is True
    assert card["header"]["title"]["content"]
    content = cards.card_content(card)
    assert json.loads(content) == card
    assert len(content.encode()) <= cards.MAX_CARD_BYTES


def test_authorize_opens_the_start_page_of_the_session():
    card = cards.authorization_request(SESSION, start_url=START_URL)
    authorize = _buttons(card)[0]
    assert authorize["type"] == "primary"
    assert authorize["behaviors"] == [
        {"type": "open_url", "default_url": f"https://auth.example.com/oauth/start/{SESSION}"}
    ]


def test_decline_calls_back_with_the_session_id():
    card = cards.authorization_request(SESSION, start_url=START_URL)
    assert _callback_values(card) == [{"action": "decline", "session_id": SESSION}]


@pytest.mark.parametrize(
    "card",
    [
        cards.declined(SESSION),
        cards.expired(SESSION),
        cards.failed(SESSION, "timeout"),
        cards.wrong_user(SESSION),
    ],
)
def test_dead_end_states_offer_request_again(card: dict[str, Any]):
    assert _callback_values(card) == [{"action": "request_again", "session_id": SESSION}]


def test_the_authorized_card_has_no_buttons():
    assert _buttons(cards.authorized("Li Lei", datetime.now())) == []


def test_description_can_be_left_out():
    with_description = cards.authorization_request(SESSION, start_url=START_URL)
    without = cards.authorization_request(SESSION, start_url=START_URL, include_description=False)
    assert "revoke this at any time" in _text(with_description)
    assert "revoke this at any time" not in _text(without)
    assert len(without["body"]["elements"]) == len(with_description["body"]["elements"]) - 1


def test_description_says_how_long_the_request_is_valid():
    card = cards.authorization_request(SESSION, start_url=START_URL, expires_in_minutes=10)
    assert "valid for 10 minutes" in _text(card)
    assert "10 分钟" in _text(card)


@pytest.mark.parametrize(
    ("reason", "english"),
    [
        (cards.ReauthReason.EXPIRED, "has expired"),
        (cards.ReauthReason.REVOKED, "was revoked"),
        (cards.ReauthReason.ENDING, "ends within days"),
    ],
)
def test_reauthorization_variant_says_why(reason: cards.ReauthReason, english: str):
    card = cards.authorization_request(SESSION, start_url=START_URL, reason=reason)
    assert english in _text(card)
    assert "Please authorize again" in card["header"]["title"]["content"]
    assert _buttons(card)[0]["behaviors"][0]["default_url"] == START_URL


def test_template_mode_sends_the_template_with_variables():
    card = cards.authorization_request(
        SESSION, start_url=START_URL, template_id="AAqkTpl123", expires_in_minutes=10
    )
    assert card == {
        "type": "template",
        "data": {
            "template_id": "AAqkTpl123",
            "template_variable": {
                "session_id": SESSION,
                "authorize_url": START_URL,
                "reason": "",
                "expires_in_minutes": 10,
            },
        },
    }


def test_settings_choose_template_and_description(settings):
    settings.LARKAUTH_PUBLIC_URL = "https://larkauth.internal"
    settings.AUTH_CARD_TEMPLATE_ID = ""
    settings.AUTH_CARD_INCLUDE_DESCRIPTION = False
    settings.AUTH_SESSION_EXPIRY_SECONDS = 600
    card = cards.authorization_request_from_settings(SESSION)
    assert _buttons(card)[0]["behaviors"][0]["default_url"] == (
        f"https://larkauth.internal/oauth/start/{SESSION}"
    )
    assert "revoke this at any time" not in _text(card)

    settings.AUTH_CARD_TEMPLATE_ID = "AAqkTpl123"
    card = cards.authorization_request_from_settings(SESSION, cards.ReauthReason.EXPIRED)
    assert card["data"]["template_variable"]["reason"] == "expired"
    assert card["data"]["template_variable"]["expires_in_minutes"] == 10


def test_authorized_says_who_and_when():
    card = cards.authorized("Li Lei", datetime(2026, 1, 20, 9, 30))
    assert "**Li Lei** authorized on 2026-01-20 09:30" in _text(card)


HOSTILE_TEXT = [
    "[click](http://evil.example/login)",
    "<at id=all></at>",
    "<font color='red'>urgent</font>",
    "**Boss** _urgent_ ~~void~~ `rm -rf`",
    "see http://evil.example now",
    "&lt;b&gt; &#42;literal&#42;",
    "back\\slash \\*not emphasis*",
]
WITH_TEXT: dict[str, Callable[[str], dict[str, Any]]] = {
    "authorized": lambda text: cards.authorized(text, datetime(2026, 1, 20, 9, 30)),
    "failed": lambda text: cards.failed(SESSION, text),
}


@pytest.mark.parametrize("build", WITH_TEXT.values(), ids=WITH_TEXT.keys())
@pytest.mark.parametrize("text", HOSTILE_TEXT)
def test_user_text_in_card_markdown_shows_as_typed_and_adds_no_markup(
    build: Callable[[str], dict[str, Any]], text: str
):
    card = build(text)
    plain = build("Li Lei")
    assert text in _shown(card)
    # The same links, mentions and emphasis as with a harmless name: none.
    assert _TAG.findall(_rendered(card)) == _TAG.findall(_rendered(plain))


def test_user_text_cannot_start_a_block_of_its_own():
    card = cards.failed(SESSION, "Li\n# Heading\n- item")
    assert "Li # Heading - item" in _shown(card)
    assert "<h1>" not in _rendered(card)
    assert "<li>" not in _rendered(card)


def test_failed_shows_a_short_redacted_reason():
    card = cards.failed(SESSION, "token endpoint said code=Zq9AuthCodeSentinel0123456789 " * 50)
    assert "Zq9AuthCodeSentinel" not in _text(card)
    assert "token endpoint said code=[REDACTED]" in _shown(card)
    assert len(cards.card_content(card).encode()) < 2_000


def test_card_content_refuses_cards_over_30_kb():
    card = cards.declined(SESSION)
    card["body"]["elements"].append({"tag": "markdown", "content": "x" * cards.MAX_CARD_BYTES})
    with pytest.raises(ValueError, match="at most"):
        cards.card_content(card)

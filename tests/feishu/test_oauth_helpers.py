"""PKCE, the authorize URL and which hosts an app talks to: no network involved."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

import pytest

from larkauth.domains import resolve_domains
from larkauth.feishu import FeishuClient, pkce
from larkauth.ratelimit import RateLimiter


def test_verifiers_are_long_random_and_in_the_allowed_alphabet():
    verifiers = {pkce.new_verifier() for _ in range(50)}
    assert len(verifiers) == 50
    for verifier in verifiers:
        assert re.fullmatch(r"[A-Za-z0-9._~-]{43,128}", verifier)


def test_challenge_is_s256_as_in_rfc_7636():
    # RFC 7636, appendix B.
    verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    assert pkce.challenge(verifier) == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


@pytest.mark.parametrize("verifier", ["short", "x" * 129, "has space" + "x" * 40])
def test_challenge_refuses_invalid_verifiers(verifier):
    with pytest.raises(ValueError, match="code_verifier"):
        pkce.challenge(verifier)


@pytest.mark.parametrize(
    ("domain", "accounts", "expected"),
    [
        ("feishu", "", ("https://open.feishu.cn", "https://accounts.feishu.cn")),
        ("lark", "", ("https://open.larksuite.com", "https://accounts.larksuite.com")),
        ("https://open.feishu.cn/", "", ("https://open.feishu.cn", "https://accounts.feishu.cn")),
        (
            "https://open.larksuite.com",
            "",
            ("https://open.larksuite.com", "https://accounts.larksuite.com"),
        ),
        ("http://127.0.0.1:8001", "", ("http://127.0.0.1:8001", "http://127.0.0.1:8001")),
        (
            "http://127.0.0.1:8001",
            "http://localhost:8002",
            ("http://127.0.0.1:8001", "http://localhost:8002"),
        ),
    ],
)
def test_it_resolves_api_and_accounts_hosts(domain, accounts, expected):
    domains = resolve_domains(domain, accounts)
    assert (domains.api, domains.accounts) == expected


def _client(domain: str = "feishu") -> FeishuClient:
    return FeishuClient("cli_test", "secret", domain=domain, rate_limiter=RateLimiter(0))


def test_authorize_url_carries_pkce_state_and_scopes():
    url = _client().authorize_url(
        redirect_uri="https://auth.example.com/oauth/callback",
        state="st4te",
        code_challenge="E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
        scope=["offline_access", "contact:user.base:readonly"],
    )
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == (
        "https://accounts.feishu.cn/open-apis/authen/v1/authorize"
    )
    assert "+" not in parts.query  # spaces as %20
    assert parse_qs(parts.query) == {
        "client_id": ["cli_test"],
        "response_type": ["code"],
        "redirect_uri": ["https://auth.example.com/oauth/callback"],
        "state": ["st4te"],
        "code_challenge": ["E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"],
        "code_challenge_method": ["S256"],
        "scope": ["offline_access contact:user.base:readonly"],
    }


def test_authorize_url_refuses_more_than_50_scopes():
    with pytest.raises(ValueError, match="50"):
        _client().authorize_url("https://x/cb", "s", "c", scope=[f"s{i}" for i in range(51)])


def test_it_refuses_plain_http_beyond_loopback():
    with pytest.raises(ValueError, match="https"):
        _client("http://open.feishu.cn")


def test_it_is_configured_by_the_application_row_and_settings(db, settings):
    from sessions_app.feishu import client_for
    from tests.factories import make_app

    settings.FEISHU_HTTP_TIMEOUT = 3.5
    settings.LARK_DOMAIN = "https://open.feishu.cn"
    settings.LARK_ACCOUNTS_DOMAIN = "https://accounts.feishu.cn"
    app = make_app(app_id="cli_from_row", domain="lark")
    client = client_for(app)
    assert client.app_id == "cli_from_row"
    assert client.domains.api == "https://open.larksuite.com"
    assert client.domains.accounts == "https://accounts.larksuite.com"
    assert client.timeout == 3.5
    assert "cli_from_row" in repr(client)
    assert "secret" not in repr(client).lower().replace("app_id", "")

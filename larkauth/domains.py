"""Which hosts to call: the Feishu-vs-Lark rule, in one place.

An application's API host serves the OpenAPI; its accounts host serves the authorize page.
`LARK_DOMAIN` / `LARK_ACCOUNTS_DOMAIN` (config/settings.py) name them for every
application, and an application marked Lark in admin is sent to Lark's hosts where those
name Feishu's. Any other base URL (the sandbox's `http://127.0.0.1:PORT`) serves both.
"""

from __future__ import annotations

from dataclasses import dataclass

FEISHU = "https://open.feishu.cn"
LARK = "https://open.larksuite.com"
FEISHU_ACCOUNTS = "https://accounts.feishu.cn"
LARK_ACCOUNTS = "https://accounts.larksuite.com"

_NAMED = {"feishu": (FEISHU, FEISHU_ACCOUNTS), "lark": (LARK, LARK_ACCOUNTS)}


@dataclass(frozen=True)
class Domains:
    api: str
    accounts: str


def is_lark(url: str) -> bool:
    return "larksuite.com" in url


def is_feishu(url: str) -> bool:
    return "feishu.cn" in url


def accounts_for(api: str) -> str:
    """The accounts host that goes with an API host."""
    return LARK_ACCOUNTS if is_lark(api) else FEISHU_ACCOUNTS if is_feishu(api) else api


def resolve_domains(domain: str, accounts_domain: str = "") -> Domains:
    """`domain` is "feishu", "lark" or a base URL (`https://open.feishu.cn`, a sandbox's
    `http://127.0.0.1:PORT`). Without `accounts_domain`, it is derived (`accounts_for`).
    """
    domain = domain.strip().rstrip("/")
    if domain.lower() in _NAMED:
        api, accounts = _NAMED[domain.lower()]
    else:
        api, accounts = domain, accounts_for(domain)
    return Domains(api=api, accounts=accounts_domain.strip().rstrip("/") or accounts)


def application_domains(lark: bool, api: str, accounts: str) -> Domains:
    """An application's hosts given the configured ones: a Lark application (`lark`) is
    sent to Lark's hosts where the configuration names Feishu's."""
    if lark:
        api = LARK if is_feishu(api) else api
        accounts = LARK_ACCOUNTS if is_feishu(accounts) else accounts
    return Domains(api=api, accounts=accounts)

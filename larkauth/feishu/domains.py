"""Which hosts to call: the API host and the accounts host (authorize page) of an app."""

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


def resolve_domains(domain: str, accounts_domain: str = "") -> Domains:
    """`domain` is "feishu", "lark" or a base URL (`https://open.feishu.cn`, a sandbox's
    `http://127.0.0.1:PORT`). Without `accounts_domain`, Feishu's and Lark's accounts hosts
    are derived; any other base URL serves the authorize page itself (the sandbox does).
    """
    domain = domain.strip().rstrip("/")
    if domain.lower() in _NAMED:
        api, accounts = _NAMED[domain.lower()]
    else:
        api = domain
        accounts = (
            LARK_ACCOUNTS
            if "larksuite.com" in domain
            else FEISHU_ACCOUNTS
            if "feishu.cn" in domain
            else domain
        )
    return Domains(api=api, accounts=accounts_domain.strip().rstrip("/") or accounts)

"""The Feishu/Lark Open Platform client (no Django models; settings only for defaults)."""

from larkauth.feishu.client import FeishuClient
from larkauth.feishu.domains import Domains, resolve_domains
from larkauth.feishu.results import ContactUser, SentMessage, UserInfo, UserToken
from larkauth.feishu.retry import RetryPolicy

__all__ = [
    "ContactUser",
    "Domains",
    "FeishuClient",
    "RetryPolicy",
    "SentMessage",
    "UserInfo",
    "UserToken",
    "resolve_domains",
]

"""The Feishu/Lark Open Platform client (no Django models; settings only for defaults)."""

from larkauth.feishu.client import FeishuClient
from larkauth.feishu.results import ContactUser, SentMessage, UserInfo, UserToken

__all__ = [
    "ContactUser",
    "FeishuClient",
    "SentMessage",
    "UserInfo",
    "UserToken",
]

"""What the Feishu client returns. Token values are left out of every `repr`."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta


@dataclass(frozen=True)
class UserToken:
    """A user access token from the v2 OAuth token endpoint (docs/feishu.md §2.1).

    `issued_at` is when the request was sent, so the computed expiries err early.
    `refresh_token` is None when the grant had no `offline_access`.
    """

    access_token: str = field(repr=False)
    refresh_token: str | None = field(repr=False)
    expires_in: int
    refresh_token_expires_in: int | None
    scope: str
    token_type: str
    issued_at: datetime

    @property
    def expires_at(self) -> datetime:
        return self.issued_at + timedelta(seconds=self.expires_in)

    @property
    def refresh_token_expires_at(self) -> datetime | None:
        if self.refresh_token is None or self.refresh_token_expires_in is None:
            return None
        return self.issued_at + timedelta(seconds=self.refresh_token_expires_in)

    @property
    def scopes(self) -> frozenset[str]:
        return frozenset(self.scope.split())


@dataclass(frozen=True)
class Person:
    """What both user APIs say of a person. Optional fields are empty without their field
    scopes (docs/feishu.md §4)."""

    open_id: str
    union_id: str
    user_id: str
    name: str
    en_name: str
    email: str
    mobile: str
    avatar_url: str


@dataclass(frozen=True)
class UserInfo(Person):
    """`authen/v1/user_info`: the user a user access token belongs to."""

    tenant_key: str


@dataclass(frozen=True)
class ContactUser(Person):
    """`contact/v3/users/:user_id`: a user as the directory sees them."""

    is_resigned: bool
    is_frozen: bool
    is_activated: bool


@dataclass(frozen=True)
class SentMessage:
    message_id: str

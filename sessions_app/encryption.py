"""Encrypted model fields keyed by `LARKAUTH_ENCRYPTION_KEYS`, never by `SECRET_KEY`.

django-cryptography's fields encrypt with one key derived from `CRYPTOGRAPHY_KEY`, and its
signer silently falls back to `SECRET_KEY`. We extend it minimally: `EncryptedTextField` is
its `EncryptedMixin` over a `TextField` whose cipher is a `KeyRing` instead of one
`FernetBytes`. Each configured key is a Fernet key (32 url-safe base64 bytes) handed to the
library's own `Fernet`, which splits it into the HMAC key and the AES key. The first key
encrypts; every key is tried to decrypt, so keys rotate without downtime.
"""

from __future__ import annotations

import base64
import binascii
import functools
import os
from typing import Any

from django.conf import settings
from django.db import models
from django_cryptography.core.signing import BadSignature
from django_cryptography.fields import EncryptedMixin
from django_cryptography.utils.crypto import Fernet, InvalidToken


class KeyConfigError(ValueError):
    pass


def generate_key() -> str:
    return base64.urlsafe_b64encode(os.urandom(32)).decode()


def validate_key(key: str) -> None:
    try:
        raw = base64.urlsafe_b64decode(key.encode())
    except (binascii.Error, ValueError) as exc:
        raise KeyConfigError("not url-safe base64") from exc
    if len(raw) != 32:
        raise KeyConfigError(f"decodes to {len(raw)} bytes, a key must be 32")


@functools.lru_cache(maxsize=8)
def _fernets(keys: tuple[str, ...]) -> tuple[Fernet, ...]:
    if not keys:
        raise KeyConfigError("LARKAUTH_ENCRYPTION_KEYS is empty")
    for key in keys:
        validate_key(key)
    return tuple(Fernet(key) for key in keys)


class KeyRing:
    """Stands in for django-cryptography's `FernetBytes`, reading the keys at call time."""

    @staticmethod
    def _current() -> tuple[Fernet, ...]:
        return _fernets(tuple(settings.LARKAUTH_ENCRYPTION_KEYS))

    def encrypt(self, data: bytes) -> bytes:
        return self._current()[0].encrypt(data)

    def decrypt(self, data: bytes, ttl: int | None = None) -> bytes:
        return self.decrypt_with_index(data, ttl)[0]

    def decrypt_with_index(self, data: bytes, ttl: int | None = None) -> tuple[bytes, int]:
        for index, fernet in enumerate(self._current()):
            try:
                return fernet.decrypt(data, ttl), index
            except (InvalidToken, BadSignature):
                continue
        raise InvalidToken("No configured encryption key can decrypt this value")


KEYRING = KeyRing()


class EncryptedTextField(EncryptedMixin, models.TextField):
    base_class = models.TextField
    wasinstance = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._fernet = KEYRING  # type: ignore[assignment]  # duck-typed FernetBytes

    # Plain Django behaviour: migrations name this class, not the library's factory.
    deconstruct = models.Field.deconstruct
    clone = models.Field.clone

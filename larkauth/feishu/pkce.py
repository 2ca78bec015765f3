"""PKCE (RFC 7636) with S256, as Feishu's authorize page and token endpoint expect."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets

_VERIFIER = re.compile(r"^[A-Za-z0-9._~-]{43,128}$")


def new_verifier(nbytes: int = 64) -> str:
    """A random verifier: `nbytes` of entropy, 43 to 128 characters of `[A-Za-z0-9-_]`."""
    verifier = secrets.token_urlsafe(nbytes)
    if not _VERIFIER.match(verifier):
        raise ValueError("nbytes must give a verifier of 43 to 128 characters (32 to 96)")
    return verifier


def challenge(verifier: str) -> str:
    """The S256 challenge: unpadded base64url of SHA-256(verifier)."""
    if not _VERIFIER.match(verifier):
        raise ValueError("a PKCE code_verifier is 43 to 128 characters of [A-Za-z0-9-._~]")
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def new_state(nbytes: int = 32) -> str:
    """An unguessable OAuth `state`."""
    return secrets.token_urlsafe(nbytes)

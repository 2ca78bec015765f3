"""Feishu's encrypted event bodies: AES-256-CBC, the key the SHA-256 of the app's encrypt
key, the IV the first 16 bytes, PKCS#7 padding (as lark-oapi's `AESCipher`, without
loading lark-oapi and pycryptodome in the web process)."""

from __future__ import annotations

import hashlib

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

BLOCK_BYTES = 16


def decrypt(encrypt_key: str, data: bytes) -> bytes:
    """The plaintext of `data` (IV + ciphertext). ValueError when it is not one."""
    if len(data) < 2 * BLOCK_BYTES or len(data) % BLOCK_BYTES:
        raise ValueError("invalid ciphertext length")
    key = hashlib.sha256(encrypt_key.encode()).digest()
    decryptor = Cipher(algorithms.AES(key), modes.CBC(data[:BLOCK_BYTES])).decryptor()
    padded = decryptor.update(data[BLOCK_BYTES:]) + decryptor.finalize()
    unpadder = padding.PKCS7(BLOCK_BYTES * 8).unpadder()
    return unpadder.update(padded) + unpadder.finalize()

"""larkauth's lark-oapi seam: the release it was written for, what it loads, its decryption."""

import base64
import hashlib
import json
import os
import subprocess
import sys

import pytest
from lark_oapi.core.utils.decryptor import AESCipher

from larkauth.feishu import sdk
from larkauth.feishu.decrypt import decrypt


def test_another_lark_oapi_release_is_refused_with_what_to_do():
    with pytest.raises(sdk.UnsupportedSdkVersion) as refused:
        sdk.check_version("1.8.0")
    message = str(refused.value)
    assert "1.8.0" in message
    assert sdk.SUPPORTED_VERSION in message
    assert "larkauth/feishu/sdk.py" in message


def test_the_installed_release_is_the_supported_one():
    sdk.check_version()


def _encrypt(key: str, plaintext: bytes, iv: bytes) -> str:
    from cryptography.hazmat.primitives import padding
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    padder = padding.PKCS7(128).padder()
    padded = padder.update(plaintext) + padder.finalize()
    cipher = Cipher(algorithms.AES(hashlib.sha256(key.encode()).digest()), modes.CBC(iv))
    encryptor = cipher.encryptor()
    return base64.b64encode(iv + encryptor.update(padded) + encryptor.finalize()).decode()


@pytest.mark.parametrize(
    "plaintext",
    [b"", b"x", b"0123456789abcdef", json.dumps({"event": {"text": "授权"}}).encode() * 40],
)
def test_decrypt_agrees_with_lark_oapi(plaintext):
    key = "encrypt-key-of-the-app"
    body = _encrypt(key, plaintext, os.urandom(16))
    assert decrypt(key, base64.b64decode(body)) == plaintext
    assert AESCipher(key).decrypt_str(body) == plaintext.decode()


@pytest.mark.parametrize(
    "data",
    [b"", b"\0" * 16, b"\0" * 33, base64.b64decode(_encrypt("another key", b"{}", b"\1" * 16))],
)
def test_what_lark_oapi_refuses_decrypt_refuses(data):
    with pytest.raises(ValueError, match=r"(?i)invalid"):
        AESCipher("encrypt-key-of-the-app").decrypt(data)
    with pytest.raises(ValueError, match=r"(?i)invalid"):
        decrypt("encrypt-key-of-the-app", data)


def _in_a_new_process(code: str) -> str:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout


def test_the_seam_loads_only_what_larkauth_calls_and_lark_oapi_stays_whole_for_others():
    out = _in_a_new_process(
        "import sys\n"
        "from larkauth.feishu import sdk\n"
        "print(len(sdk.loaded_modules()), 'lark_oapi.client' in sys.modules)\n"
        "import lark_oapi as lark\n"
        "print(lark.Client.__module__, lark.EventDispatcherHandler.__name__, lark.im.v1)\n"
    )
    first, second = out.splitlines()
    count, full_client = first.split()
    assert int(count) < 300
    assert full_client == "False"
    assert second.startswith("lark_oapi.client EventDispatcherHandler <module")


def test_the_listener_client_loads_without_the_event_dispatcher():
    out = _in_a_new_process(
        "import sys\n"
        "from larkauth.feishu import sdk\n"
        "ws = sdk.load_ws()\n"
        "print(ws.Client.__name__, any(m.startswith('lark_oapi.event.') for m in sys.modules))\n"
        "from lark_oapi.event.dispatcher_handler import EventDispatcherHandler\n"
        "print(EventDispatcherHandler.__module__, hasattr(EventDispatcherHandler, 'builder'))\n"
    )
    assert out.splitlines() == [
        "Client False",
        "lark_oapi.event.dispatcher_handler True",
    ]

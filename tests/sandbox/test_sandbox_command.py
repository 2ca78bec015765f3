"""`manage.py lark_sandbox` and the demo seed."""

from __future__ import annotations

import os
import queue
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import requests

from larkauth.sandbox import DEMO_USERS, SandboxControl, demo_seed
from larkauth.sandbox.server import SandboxServer

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_the_demo_seed_comes_back_after_a_reset():
    seed = demo_seed(app_id="cli_demo", app_secret="demo-secret")
    with SandboxServer(seed=seed) as server:
        control = SandboxControl(server.url)
        control.add_user("Extra")

        control.reset()

        assert [u["en_name"] for u in control.users()] == ["Zhang San", "Li Si", "Wang Wu"]
        assert [a["app_id"] for a in control.apps()] == ["cli_demo"]
        control.reset(seed=False)
        assert control.users() == []
        control.close()


@pytest.mark.slow
def test_the_command_serves_the_configured_app_and_demo_users_until_sigterm(tmp_path):
    port = free_port()
    env = {
        **os.environ,
        "LARK_APP_ID": "cli_command_test",
        "LARK_APP_SECRET": "command-secret",
        "LARK_ENCRYPT_KEY": "command-encrypt-key",
        "LARKAUTH_PUBLIC_URL": "http://127.0.0.1:8999",
    }
    with (tmp_path / "stderr.log").open("w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "manage.py", "lark_sandbox", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    try:
        printed: list[str] = []
        while not any("events:" in line for line in printed):
            printed.append(lines.get(timeout=30))
        base = f"http://127.0.0.1:{port}"
        assert any(f"{base}/_sandbox/" in line for line in printed)
        for user in DEMO_USERS:
            assert any(f"/_sandbox/inbox/{user['open_id']}" in line for line in printed)
        control = SandboxControl(base)
        users = control.users()
        [app] = control.apps()

        assert [u["name"] for u in users] == ["张三", "李四", "王五"]
        assert app["app_id"] == "cli_command_test"
        assert app["event_callback_url"] == "http://127.0.0.1:8999/lark/events/"
        assert "command-secret" not in str(app)
        token = requests.post(
            base + "/open-apis/auth/v3/tenant_access_token/internal",
            json={"app_id": "cli_command_test", "app_secret": "command-secret"},
            timeout=10,
        ).json()
        assert token["code"] == 0
        control.close()
    finally:
        process.send_signal(signal.SIGTERM)
        returncode = process.wait(timeout=20)
    assert returncode == 0, (tmp_path / "stderr.log").read_text()[-2000:]

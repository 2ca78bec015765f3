"""A typed client of the sandbox's control API, for tests and benchmarks.

control = SandboxControl("http://127.0.0.1:8001")
control.reset()
control.add_app("cli_x", "secret", encrypt_key="k", verification_token="v")
alice = control.add_user("Alice", email="alice@example.com")
code = control.authorize_code("cli_x", "http://x/cb", alice["open_id"], scope="offline_access")
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests


class SandboxControlError(RuntimeError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"sandbox control API answered {status}: {message}")
        self.status = status


class SandboxControl:
    def __init__(self, base_url: str, timeout: float = 30.0) -> None:
        self.url = base_url.rstrip("/")
        self.timeout = timeout
        self.http = requests.Session()

    def close(self) -> None:
        self.http.close()

    def _call(self, method: str, path: str, body: Any = None, **params: Any) -> Any:
        query = {k: v for k, v in params.items() if v is not None}
        response = self.http.request(
            method,
            f"{self.url}/_sandbox/api/{path}",
            json=body,
            params=query,
            timeout=self.timeout,
        )
        if response.status_code >= 400:
            try:
                message = response.json().get("error", response.text)
            except ValueError:
                message = response.text
            raise SandboxControlError(response.status_code, message)
        return response.json()

    # --- world ------------------------------------------------------------------------

    def reset(self, *, seed: bool = True, keep_app_tokens: bool = False) -> None:
        self._call("POST", "reset", {"seed": seed, "keep_app_tokens": keep_app_tokens})

    def add_app(
        self,
        app_id: str,
        app_secret: str,
        *,
        encrypt_key: str = "",
        verification_token: str = "",
        event_callback_url: str = "",
        **extra: Any,
    ) -> dict[str, Any]:
        """`extra`: name, redirect_uris (list), scopes (list or None), allow_refresh (bool)."""
        body = {
            "app_id": app_id,
            "app_secret": app_secret,
            "encrypt_key": encrypt_key,
            "verification_token": verification_token,
            "event_callback_url": event_callback_url,
            **extra,
        }
        result: dict[str, Any] = self._call("POST", "apps", body)
        return result

    def apps(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call("GET", "apps")
        return result

    def add_user(self, name: str, **fields: Any) -> dict[str, Any]:
        """`fields`: open_id, union_id, user_id (generated when missing), en_name, email,
        mobile, employee_no, job_title, is_resigned, is_frozen."""
        result: dict[str, Any] = self._call("POST", "users", {"name": name, **fields})
        return result

    def update_user(self, open_id: str, **changes: Any) -> dict[str, Any]:
        """`changes`: name, en_name, email, mobile, employee_no, job_title, is_resigned,
        is_frozen (ids cannot change)."""
        result: dict[str, Any] = self._call("PATCH", f"users/{open_id}", changes)
        return result

    def users(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call("GET", "users")
        return result

    def config(self) -> dict[str, int]:
        result: dict[str, int] = self._call("GET", "config")
        return result

    def set_config(self, **values: int) -> dict[str, int]:
        """access_token_ttl, refresh_token_ttl, code_ttl, tenant_token_ttl,
        callback_timeout_ms, ws_ping_interval, ws_reconnect_interval, ws_reconnect_nonce,
        ws_reconnect_count, ws_max_connections."""
        result: dict[str, int] = self._call("POST", "config", values)
        return result

    def advance_clock(self, seconds: float) -> float:
        """Move the sandbox's clock forward (token, code and message ages)."""
        return float(self._call("POST", "clock", {"seconds": seconds})["offset"])

    # --- faults, revocation, observation -----------------------------------------------

    def add_fault(
        self,
        api: str,
        *,
        code: int | None = None,
        http_status: int | None = None,
        latency_ms: int | None = None,
        times: int = 1,
        drop_connection: bool = False,
        html: bool = False,
    ) -> dict[str, Any]:
        body = {
            "api": api,
            "code": code,
            "http_status": http_status,
            "latency_ms": latency_ms,
            "times": times,
            "drop_connection": drop_connection,
            "html": html,
        }
        result: dict[str, Any] = self._call("POST", "faults", body)
        return result

    def faults(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call("GET", "faults")
        return result

    def clear_faults(self) -> None:
        self._call("DELETE", "faults")

    def revoke(self, open_id: str, app_id: str | None = None) -> dict[str, int]:
        result: dict[str, int] = self._call(
            "POST", "revoke", {"open_id": open_id, "app_id": app_id}
        )
        return result

    def calls(self, api: str | None = None) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call("GET", "calls", api=api)
        return result

    def clear_calls(self) -> None:
        self._call("DELETE", "calls")

    def messages(
        self, open_id: str | None = None, message_id: str | None = None
    ) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call(
            "GET", "messages", open_id=open_id, message_id=message_id
        )
        return result

    def message(self, message_id: str) -> dict[str, Any]:
        found = self.messages(message_id=message_id)
        if not found:
            raise SandboxControlError(404, f"no message {message_id}")
        return found[0]

    # --- long connection -----------------------------------------------------------------

    def ws_push(
        self,
        app_id: str,
        event: dict[str, Any],
        *,
        frame_type: str = "event",
        wait_ack_ms: int = 0,
        parts: int = 1,
    ) -> dict[str, Any]:
        """→ {message_id, conn_id, delivered, ack: {code, data, biz_rt, ...} | None, event}"""
        body = {
            "app_id": app_id,
            "event": event,
            "frame_type": frame_type,
            "wait_ack_ms": wait_ack_ms,
            "parts": parts,
        }
        result: dict[str, Any] = self._call("POST", "ws/push", body)
        return result

    def ws_acks(
        self, app_id: str | None = None, message_id: str | None = None
    ) -> list[dict[str, Any]]:
        """Every push (with its `ack`, or None while unacknowledged)."""
        result: list[dict[str, Any]] = self._call(
            "GET", "ws/acks", app_id=app_id, message_id=message_id
        )
        return result

    def ws_drop(self, app_id: str | None = None) -> int:
        return int(self._call("POST", "ws/drop", {"app_id": app_id})["dropped"])

    def ws_connections(
        self, app_id: str | None = None, *, min_count: int | None = None, wait_ms: int = 0
    ) -> list[dict[str, Any]]:
        """Live connections; with min_count, waits up to wait_ms for that many."""
        result: list[dict[str, Any]] = self._call(
            "GET", "ws/connections", app_id=app_id, min=min_count, wait_ms=wait_ms or None
        )
        return result

    # --- HTTP delivery and card clicks ---------------------------------------------------

    def deliver_event(
        self,
        app_id: str,
        event: dict[str, Any],
        *,
        encrypt: bool | None = None,
        timestamp: str | None = None,
        nonce: str | None = None,
        signature: str | None = None,
        url: str | None = None,
    ) -> dict[str, Any]:
        """→ {status, body, error, elapsed_ms, event_id, encrypted, event}"""
        body = {
            "app_id": app_id,
            "event": event,
            "encrypt": encrypt,
            "timestamp": timestamp,
            "nonce": nonce,
            "signature": signature,
            "url": url,
        }
        result: dict[str, Any] = self._call("POST", "events/deliver", body)
        return result

    def card_click(
        self,
        open_id: str,
        message_id: str,
        value: Any,
        *,
        channel: str = "auto",
        frame_type: str = "event",
        name: str | None = None,
    ) -> dict[str, Any]:
        """→ {channel, ok, toast, card_updated, error_code, error, response, event_id, ...}"""
        body = {
            "open_id": open_id,
            "message_id": message_id,
            "value": value,
            "channel": channel,
            "frame_type": frame_type,
            "name": name,
        }
        result: dict[str, Any] = self._call("POST", "card/click", body)
        return result

    # --- the consent page, without a browser ---------------------------------------------

    def consent(
        self,
        client_id: str,
        redirect_uri: str,
        open_id: str,
        *,
        decision: str = "approve",
        scope: str = "",
        state: str = "",
        code_challenge: str = "",
        code_challenge_method: str = "",
    ) -> requests.Response:
        """POST the consent form as the person would; returns the (302) response."""
        params = {
            "client_id": client_id,
            "response_type": "code",
            "redirect_uri": redirect_uri,
            "scope": scope,
            "state": state,
        }
        if code_challenge:
            params["code_challenge"] = code_challenge
            params["code_challenge_method"] = code_challenge_method or "plain"
        return self.http.post(
            f"{self.url}/open-apis/authen/v1/authorize",
            params=params,
            data={"open_id": open_id, "decision": decision},
            allow_redirects=False,
            timeout=self.timeout,
        )

    def authorize_code(self, client_id: str, redirect_uri: str, open_id: str, **kwargs: str) -> str:
        """Approve as `open_id` and return the authorization code from the redirect."""
        response = self.consent(client_id, redirect_uri, open_id, **kwargs)
        if response.status_code != 302:
            raise SandboxControlError(response.status_code, response.text[:200])
        query = parse_qs(urlsplit(response.headers["Location"]).query)
        return query["code"][0]

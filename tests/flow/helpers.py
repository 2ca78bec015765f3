"""Drive larkauth like its users do: a service over the REST API, a person in the browser."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests
from django.test import Client

from sessions_app.models import Application, ServiceClient
from tests.fixtures.sandbox import TEST_APP, Sandbox

PUBLIC_URL = "http://testserver"


@dataclass
class LarkEnv:
    sandbox: Sandbox
    app: Application
    api_key: str
    client: Client

    @classmethod
    def create(cls, settings: Any, sandbox: Sandbox) -> LarkEnv:
        settings.LARK_DOMAIN = sandbox.url
        settings.LARK_ACCOUNTS_DOMAIN = sandbox.url
        settings.LARKAUTH_PUBLIC_URL = PUBLIC_URL
        app = Application.objects.create(
            app_id=TEST_APP["app_id"],
            app_secret=TEST_APP["app_secret"],
            encrypt_key=TEST_APP["encrypt_key"],
            verification_token=TEST_APP["verification_token"],
        )
        service, key = ServiceClient.objects.create_key(name="test-service")
        assert isinstance(service, ServiceClient)
        service.applications.add(app)
        return cls(sandbox=sandbox, app=app, api_key=key, client=Client())

    def api(
        self, method: str, path: str, body: dict[str, Any] | None = None, key: str | None = None
    ):
        headers = {"HTTP_AUTHORIZATION": f"Api-Key {self.api_key if key is None else key}"}
        send = getattr(self.client, method)
        if body is None:
            return send(path, **headers)
        return send(path, body, content_type="application/json", **headers)

    def request_token(self, **body: Any):
        return self.api("post", "/api/v1/tokens/", body)

    def open_card_session(self, open_id: str, **body: Any) -> str:
        response = self.api("post", "/api/v1/auth-sessions/", {"open_id": open_id, **body})
        assert response.status_code == 201, response.content
        return str(response.json()["id"])

    def start(self, session_id: str):
        return self.client.get(f"/oauth/start/{session_id}")

    def consent(self, session_id: str, open_id: str, decision: str = "approve") -> str:
        """Open the card's link and decide on Feishu's page; returns the callback URL."""
        start = self.start(session_id)
        assert start.status_code == 302, start.content
        consent = requests.post(
            start["Location"],
            data={"open_id": open_id, "decision": decision},
            allow_redirects=False,
            timeout=10,
        )
        assert consent.status_code == 302, consent.text
        callback = urlsplit(consent.headers["Location"])
        assert f"{callback.scheme}://{callback.netloc}" == PUBLIC_URL
        return f"{callback.path}?{callback.query}"

    def authorize(self, session_id: str, open_id: str, decision: str = "approve"):
        """The whole browser trip: start → Feishu's consent page → our callback."""
        return self.client.get(self.consent(session_id, open_id, decision))

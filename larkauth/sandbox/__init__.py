"""An offline stand-in for the Feishu Open Platform (see README.md in this package).

Point lark-oapi (or any client) at it by changing only the domain:
`lark.Client.builder().domain(server.url)`, `lark.ws.Client(..., domain=server.url)`.
Pure Python on aiohttp; no Django needed (`manage.py lark_sandbox` is a thin wrapper).

Modules: state (the in-memory world), oauth (app tokens, consent page, user tokens),
openapi (user info, contacts, messages), longconn (WebSocket protocol), delivery (signed
and encrypted HTTP events), callbacks (card clicks), pages/cardview/templates (HTML),
control (the control API), server (app, SandboxServer, run), control_client
(SandboxControl), seed (demo data).
"""

from larkauth.sandbox.control_client import SandboxControl, SandboxControlError
from larkauth.sandbox.seed import DEMO_USERS, demo_seed, seed_demo
from larkauth.sandbox.state import Config, SandboxState

__all__ = [
    "DEMO_USERS",
    "Config",
    "SandboxControl",
    "SandboxControlError",
    "SandboxState",
    "demo_seed",
    "seed_demo",
]

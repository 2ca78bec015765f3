"""Demo data: one app and three users with fixed ids, so links and logs stay stable."""

from __future__ import annotations

from typing import Any

from larkauth.sandbox.state import SandboxState, Seed
from larkauth.sandbox.util import stable_hex

DEMO_USERS: tuple[dict[str, Any], ...] = tuple(
    {
        "open_id": "ou_" + stable_hex("demo-open", key),
        "union_id": "on_" + stable_hex("demo-union", key),
        "user_id": key,
        "name": name,
        "en_name": en_name,
        "email": f"{key}@example.com",
        "mobile": f"+86138000000{index:02d}",
        "employee_no": f"E{index:04d}",
        "job_title": title,
    }
    for index, (key, name, en_name, title) in enumerate(
        [
            ("zhangsan", "张三", "Zhang San", "Engineer"),
            ("lisi", "李四", "Li Si", "Product Manager"),
            ("wangwu", "王五", "Wang Wu", "Data Analyst"),
        ],
        start=1,
    )
)


def seed_demo(
    state: SandboxState,
    *,
    app_id: str,
    app_secret: str,
    encrypt_key: str = "",
    verification_token: str = "",
    event_callback_url: str = "",
    name: str = "larkauth demo",
) -> None:
    """Register the app and the demo users (idempotent)."""
    state.add_app(
        app_id=app_id,
        app_secret=app_secret,
        encrypt_key=encrypt_key,
        verification_token=verification_token,
        event_callback_url=event_callback_url,
        name=name,
    )
    for user in DEMO_USERS:
        state.add_user(**user)


def demo_seed(**app: str) -> Seed:
    """`seed_demo` bound to one app, for `SandboxState(seed=...)`: reset re-applies it."""

    def seed(state: SandboxState) -> None:
        seed_demo(state, **app)

    return seed

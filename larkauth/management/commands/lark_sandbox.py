from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from larkauth.sandbox.seed import DEMO_USERS, demo_seed


class Command(BaseCommand):
    help = (
        "Run the offline Feishu sandbox (OpenAPI, consent page, long connection, inboxes) "
        "with the configured app and three demo users. Runs until Ctrl-C or SIGTERM."
    )

    # The sandbox needs nothing from the project's configuration but a few settings.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8001)

    def handle(self, *args: Any, **options: Any) -> None:
        # Imported here: it loads lark-oapi, which takes a few seconds.
        from larkauth.sandbox.server import run

        public_url = str(getattr(settings, "LARKAUTH_PUBLIC_URL", "http://127.0.0.1:8000"))
        app = {
            "app_id": str(getattr(settings, "LARK_APP_ID", "") or "cli_demo_app"),
            "app_secret": str(getattr(settings, "LARK_APP_SECRET", "") or "demo-app-secret"),
            "encrypt_key": str(getattr(settings, "LARK_ENCRYPT_KEY", "")),
            "verification_token": str(getattr(settings, "LARK_VERIFICATION_TOKEN", "")),
            "event_callback_url": public_url.rstrip("/") + "/lark/events/",
        }
        host, port = options["host"], options["port"]
        base = f"http://{host}:{port}"

        def announce() -> None:
            self.stdout.write(f"Feishu sandbox on {base} for app {app['app_id']}")
            self.stdout.write(f"  index:  {base}/_sandbox/")
            for user in DEMO_USERS:
                inbox = f"{base}/_sandbox/inbox/{user['open_id']}"
                self.stdout.write(f"  inbox of {user['en_name']}: {inbox}")
            self.stdout.write(f"  events: {app['event_callback_url']}")
            self.stdout.flush()

        run(host, port, seed=demo_seed(**app), on_ready=announce)
        self.stdout.write("Feishu sandbox stopped.")

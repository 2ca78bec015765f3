import gc
import logging
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from prometheus_client import start_http_server

from events_app.ws import listener
from sessions_app import selectors
from sessions_app.services import application_ensure_default

logger = logging.getLogger("events_app.ws.listener")


class Command(BaseCommand):
    help = (
        "Hold Feishu's WebSocket long connection (card clicks, messages to the bot) until "
        "SIGTERM (exit 0). Each application backs off on its own; with --app, exits 1 once "
        "every one of its applications has failed WEBSOCKET_MAX_RECONNECT_RETRIES attempts "
        "in a row."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--app",
            action="append",
            default=[],
            metavar="APP_ID",
            help="only this application (repeatable); default: every active application",
        )
        parser.add_argument(
            "--metrics-port",
            type=int,
            default=0,
            help="serve this process's /metrics on the port (when PROMETHEUS_MULTIPROC_DIR "
            "is not shared with the web process)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        # lark-oapi's import graph is large: keep the collector from walking it again and
        # again (and for over a second at exit).
        gc.freeze()
        application_ensure_default()
        apps = selectors.applications_active_readable()
        if options["app"]:
            apps = [app for app in apps if app.app_id in options["app"]]
            missing = set(options["app"]) - {app.app_id for app in apps}
            if missing:
                raise CommandError(f"No active application {', '.join(sorted(missing))}")
        if not apps:
            raise CommandError("No active application to listen for")
        if options["metrics_port"]:
            start_http_server(options["metrics_port"])
        self.stdout.write(f"Listening for {', '.join(app.app_id for app in apps)}")
        self.stdout.flush()
        try:
            listener.run(apps, follow=not options["app"])
        except listener.ListenerFailed as exc:
            logger.error("%s", exc)
            raise SystemExit(1) from exc
        self.stdout.write("Listener stopped")

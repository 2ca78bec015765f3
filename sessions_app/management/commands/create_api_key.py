from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from sessions_app.models import Application, ServiceClient


class Command(BaseCommand):
    help = (
        "Create an API key for an internal service, limited to the given applications. The key "
        "is printed once, alone on the last line, and stored only hashed."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="who uses the key, e.g. 'expense-bot'")
        parser.add_argument(
            "--app",
            action="append",
            dest="apps",
            default=[],
            metavar="APP_ID",
            help="an application the key may use (repeatable; default: every active one)",
        )

    def handle(self, *args: Any, name: str, apps: list[str], **options: Any) -> None:
        chosen = Application.objects.filter(is_active=True)
        if apps:
            chosen = chosen.filter(app_id__in=apps)
            missing = set(apps) - set(chosen.values_list("app_id", flat=True))
            if missing:
                raise CommandError(f"No active application: {', '.join(sorted(missing))}")
        if not chosen.exists():
            raise CommandError("There is no active application to give this key access to.")
        client, key = ServiceClient.objects.create_key(name=name)
        assert isinstance(client, ServiceClient)
        client.applications.set(chosen)
        app_ids = ", ".join(chosen.values_list("app_id", flat=True))
        self.stdout.write(f"Created API key {client.prefix}… for {name!r}, applications: {app_ids}")
        self.stdout.write("Send it as 'Authorization: Api-Key <key>'. It is shown only now:")
        self.stdout.write(key)

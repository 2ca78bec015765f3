from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from sessions_app import selectors, services
from sessions_app.models import Application


class Command(BaseCommand):
    help = "Update authorized users' names, emails, mobiles and ids from the contact directory."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--app", default=None, metavar="APP_ID", help="only this app")

    def handle(self, *args: Any, **options: Any) -> None:
        app = None
        if options["app"]:
            try:
                app = selectors.application_get(options["app"])
            except Application.DoesNotExist as exc:
                raise CommandError(str(exc)) from exc
        if not settings.USER_INFO_SYNC_ENABLED:
            self.stdout.write(
                "Note: USER_INFO_SYNC_ENABLED is off, the scheduled sync does not run."
            )
        report = services.users_sync_info(app=app)
        self.stdout.write(str(report))
        if report.failed:
            raise CommandError(f"{report.failed} users could not be synced (see the log)")

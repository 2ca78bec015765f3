from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from sessions_app.services.cleanup import cleanup_run


class Command(BaseCommand):
    help = (
        "What the hourly cleanup_auth_sessions job does: delete sessions older than the "
        "retention (authorizations, completed or needs_reauth, stay) and handled event ids "
        "older than a week."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--days",
            type=int,
            default=None,
            help="retention in days (default: AUTH_SESSION_RETENTION_DAYS)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        self.stdout.write(str(cleanup_run(retention_days=options["days"])))

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from sessions_app import services


class Command(BaseCommand):
    help = (
        "Expire pending sessions past their time (cards updated) and delete sessions older "
        "than the retention; authorizations (completed, needs_reauth) stay."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--days",
            type=int,
            default=None,
            help="retention in days (default: AUTH_SESSION_RETENTION_DAYS)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        expired = services.sessions_expire_all_stale()
        days = options["days"] or settings.AUTH_SESSION_RETENTION_DAYS
        deleted = services.auth_sessions_delete_old(retention_days=days)
        self.stdout.write(
            f"Expired {expired} pending sessions; "
            f"deleted {deleted} sessions older than {days} days."
        )

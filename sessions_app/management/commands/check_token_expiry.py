from typing import Any

from django.core.management.base import BaseCommand

from sessions_app import services


class Command(BaseCommand):
    help = (
        "Warn application admins of authorizations ending within 7 and 3 days or ended, and "
        "send those users a re-authorization card (each once), as check_refresh_token_expiry."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        self.stdout.write(str(services.refresh_token_expiry_check()))

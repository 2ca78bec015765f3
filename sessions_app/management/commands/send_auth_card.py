from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from larkauth.errors import LarkauthError
from sessions_app import selectors, services
from sessions_app.models import Application


class Command(BaseCommand):
    help = "Send a user the authorization card (or reuse the pending one)."

    def add_arguments(self, parser: CommandParser) -> None:
        who = parser.add_mutually_exclusive_group(required=True)
        who.add_argument("--open-id", default="")
        who.add_argument("--user-id", default="")
        who.add_argument("--email", default="")
        parser.add_argument("--app", default=None, metavar="APP_ID")
        parser.add_argument("--force", action="store_true", help="even if already authorized")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            app = selectors.application_get(options["app"])
        except Application.DoesNotExist as exc:
            raise CommandError(str(exc)) from exc
        who = services.UserRef(
            open_id=options["open_id"], user_id=options["user_id"], email=options["email"]
        )
        try:
            result = services.auth_request(app, who, force=options["force"], actor="cli")
        except LarkauthError as exc:
            raise CommandError(f"Could not send the card: {exc}") from exc
        if result.authorization is not None:
            self.stdout.write(f"{who} is already authorized (use --force to ask again).")
        elif result.created:
            assert result.session is not None
            self.stdout.write(
                f"Sent card to {who}: session {result.session.pk}, "
                f"message {result.session.message_id}"
            )
        else:
            assert result.session is not None
            self.stdout.write(f"{who} already has a pending card: session {result.session.pk}")

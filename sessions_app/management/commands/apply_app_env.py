from typing import Any

from django.core.management.base import BaseCommand, CommandError

from sessions_app.services.applications import ENV_SECRETS, application_apply_env


class Command(BaseCommand):
    help = (
        "Write LARK_APP_SECRET, LARK_ENCRYPT_KEY and LARK_VERIFICATION_TOKEN into the "
        "application of LARK_APP_ID (created if missing), replacing what was set in admin. "
        "Empty settings keep the stored value. Prints which fields changed, never a value."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            result = application_apply_env()
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        app_id = result.app.app_id
        if result.created:
            self.stdout.write(f"Created application {app_id} from the environment.")
            return
        for name in result.changed:
            self.stdout.write(f"{app_id}: {name} set from {ENV_SECRETS[name]}.")
        for name in result.kept:
            self.stdout.write(f"{app_id}: {name} kept ({ENV_SECRETS[name]} is empty).")
        if not result.changed:
            self.stdout.write(f"{app_id}: already matches the environment, nothing changed.")

from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from sessions_app.models import ServiceClient
from sessions_app.services import application_ensure_default

DEMO_USERNAME = "admin"
DEMO_PASSWORD = "larkauth-demo"  # noqa: S105  (development demo only; refused outside DEBUG)


class Command(BaseCommand):
    help = (
        "Development only: create the demo superuser and a demo API key, and print how to "
        "try the flow against the Feishu sandbox."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.DEBUG:
            raise CommandError("demo_setup only runs with DJANGO_DEBUG=true.")
        user, _ = get_user_model().objects.get_or_create(username=DEMO_USERNAME)
        user.is_staff = user.is_superuser = True
        user.set_password(DEMO_PASSWORD)
        user.save()
        app = application_ensure_default()
        base = settings.LARKAUTH_PUBLIC_URL
        self.stdout.write(
            f"Admin:   {base}/admin/  user {DEMO_USERNAME!r}, password {DEMO_PASSWORD!r}"
        )
        if app is None:
            return
        ServiceClient.objects.filter(name="demo").delete()
        client, key = ServiceClient.objects.create_key(name="demo")
        client.applications.add(app)  # type: ignore[attr-defined]
        from larkauth.sandbox.seed import DEMO_USERS

        open_id = DEMO_USERS[0]["open_id"]
        self.stdout.write(f"API key: {key}  (service 'demo', app {app.app_id})")
        self.stdout.write("Try it: ask for Zhang San's token; he gets a card in the sandbox inbox:")
        body = f'{{"open_id": "{open_id}", "prompt": true}}'
        self.stdout.write(
            f"  curl -s -X POST {base}/api/v1/tokens/ -H 'Authorization: Api-Key {key}' "
            f"-H 'Content-Type: application/json' -d '{body}'"
        )
        self.stdout.write(f"  inbox: {settings.LARK_DOMAIN}/_sandbox/inbox/{open_id}")

from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

DEMO_USERNAME = "admin"
DEMO_PASSWORD = "larkauth-demo"  # noqa: S105  (development demo only; refused outside DEBUG)


class Command(BaseCommand):
    help = "Development only: create the demo superuser and print how to sign in."

    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.DEBUG:
            raise CommandError("demo_setup only runs with DJANGO_DEBUG=true.")
        user_model = get_user_model()
        user, _ = user_model.objects.get_or_create(username=DEMO_USERNAME)
        user.is_staff = user.is_superuser = True
        user.set_password(DEMO_PASSWORD)
        user.save()
        base = settings.LARKAUTH_PUBLIC_URL
        self.stdout.write(
            f"Admin:    {base}/admin/  user {DEMO_USERNAME!r}, password {DEMO_PASSWORD!r}"
        )

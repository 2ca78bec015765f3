from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from sessions_app import services
from sessions_app.services.refresh_sweep import SWEEP_THREADS


class Command(BaseCommand):
    help = (
        "Refresh the authorizations due now (keep-alive and warm), as the "
        "refresh_expiring_tokens task does, in the foreground."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--threads", type=int, default=SWEEP_THREADS, help="refreshes in parallel"
        )
        parser.add_argument(
            "--time-budget", type=float, default=None, help="stop taking candidates after SECONDS"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        report = services.tokens_refresh_expiring(
            threads=options["threads"], time_budget=options["time_budget"], actor="cli"
        )
        self.stdout.write(str(report))

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from sessions_app.rotation import rotate_encryption_keys


class Command(BaseCommand):
    help = (
        "Re-encrypt every stored secret and token under the first key of "
        "LARKAUTH_ENCRYPTION_KEYS. Put the new key first, keep the old ones after it, run "
        "this, then drop the old keys. Values no configured key decrypts are listed and left "
        "as they are (exit status 1)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--batch-size", type=int, default=500)

    def handle(self, *args: Any, batch_size: int, **options: Any) -> None:
        result = rotate_encryption_keys(batch_size=batch_size)
        self.stdout.write(
            f"Checked {result.rows_seen} rows, re-encrypted {result.values_reencrypted} values "
            "under the current key."
        )
        if result.undecryptable:
            # Listed by place, never by value; everything else was rotated.
            for where in result.undecryptable:
                self.stdout.write(f"Cannot decrypt with any configured key: {where}")
            raise CommandError(
                f"{len(result.undecryptable)} values could not be decrypted with any key of "
                "LARKAUTH_ENCRYPTION_KEYS and were left as they are: put their key back, or "
                "revoke those authorizations, before dropping old keys."
            )

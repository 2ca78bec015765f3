"""A separate process that asks for one user's token from several threads at once.

Used by the single-flight refresh test: argv = app_id open_id threads start_at_epoch.
Prints one JSON list of the tokens (or error names) it got.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django

django.setup()

from django.db import connection  # noqa: E402

from sessions_app.services import get_active_token  # noqa: E402


def main() -> None:
    app_id, open_id, threads, start_at = (
        sys.argv[1],
        sys.argv[2],
        int(sys.argv[3]),
        float(sys.argv[4]),
    )
    results: list[str] = []

    def ask() -> None:
        time.sleep(max(0.0, start_at - time.time()))
        try:
            results.append(get_active_token(app_id, open_id=open_id) or "none")
        except Exception as exc:  # the test reports what went wrong
            results.append(f"error:{type(exc).__name__}:{exc}")
        finally:
            connection.close()

    workers = [threading.Thread(target=ask) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    print(json.dumps(results))


if __name__ == "__main__":
    main()

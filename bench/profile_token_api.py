"""Where a token read's time goes: `POST /api/v1/tokens/` and the reference view (a DRF
primary-key lookup) served in-process by Django's test client (no gunicorn, no network),
N requests each under pyinstrument. Prints each view's time per request and the profile of
the token view. Needs `pip install pyinstrument`.
Run: `BENCH_DB=... .venv/bin/python -m bench.profile_token_api [--requests N]`.
"""

from __future__ import annotations

import argparse

from bench import harness
from bench.token_api import setup_data


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=2000)
    count = parser.parse_args().requests
    harness.recreate_database(harness.bench_env(DJANGO_SETTINGS_MODULE="bench.settings"))
    app_pk, key, open_id = setup_data()
    from django.test import Client

    client = Client()
    headers = {"Authorization": f"Api-Key {key}"}
    body = {"open_id": open_id}

    def token() -> None:
        response = client.post("/api/v1/tokens/", body, "application/json", headers=headers)
        assert response.status_code == 200, response.content

    def reference() -> None:
        assert client.post(f"/bench/reference/{app_pk}").status_code == 200

    harness.profile_in_process("reference", reference, count, show=False)
    harness.profile_in_process("tokens", token, count, show=True)


if __name__ == "__main__":
    main()

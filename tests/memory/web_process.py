"""A web process of larkauth (Django's WSGI handler, through the test client) serving the
requests a JSON file on argv[1] lists; prints what it answered and which lark-oapi
modules it loaded, as JSON."""

from __future__ import annotations

import base64
import json
import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.test import Client

    with open(sys.argv[1]) as plan_file:
        plan = json.load(plan_file)
    client = Client()
    statuses = []
    for request in plan:
        body = base64.b64decode(request.get("body", ""))
        response = getattr(client, request["method"])(
            request["path"], body, content_type="application/json", headers=request["headers"]
        )
        statuses.append(response.status_code)
    modules = sorted(name for name in sys.modules if name.split(".")[0] == "lark_oapi")
    print(json.dumps({"statuses": statuses, "lark_oapi_modules": modules}))


if __name__ == "__main__":
    main()

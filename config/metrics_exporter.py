"""`python -m config.metrics_exporter COMMAND...`: run COMMAND (a Celery worker, the WebSocket
listener) and serve, on `METRICS_PORT` (9100), the samples its processes write to
`PROMETHEUS_MULTIPROC_DIR`.

In docker-compose each container has a multiprocess directory of its own (a tmpfs, empty at
every start): prometheus_client names its files by PID, and processes of different
containers have the same low PIDs, so one shared directory mixes their samples. The web
container's `/metrics` therefore shows only gunicorn's processes, and Prometheus scrapes the
worker and listener containers here. `METRICS_TOKEN` guards this port as it does `/metrics`.

The exporter is the container's first process: it passes SIGTERM and SIGINT to COMMAND and
exits with COMMAND's status.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable
from types import FrameType
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app

from config.metrics import refusal
from config.multiproc import ProcessFilesCollector

Environ = dict[str, Any]
StartResponse = Callable[..., Any]


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """A line per scrape every 15 s would drown the command's own log."""


def guarded_app(registry: CollectorRegistry, token: str) -> Callable[..., Iterable[bytes]]:
    metrics = make_wsgi_app(registry)

    def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        refused = refusal(environ.get("HTTP_AUTHORIZATION", ""), token)
        if refused is None:
            return metrics(environ, start_response)
        status, body = refused
        headers = [("Content-Type", "application/json")]
        if status == 401:
            headers.append(("WWW-Authenticate", 'Bearer realm="metrics"'))
        start_response(f"{status} {'Unauthorized' if status == 401 else 'Forbidden'}", headers)
        return [json.dumps(body).encode()]

    return app


def serve(port: int, token: str) -> WSGIServer:
    registry = CollectorRegistry()
    ProcessFilesCollector(registry)
    server = make_server(
        "0.0.0.0",  # noqa: S104  (reached by Prometheus in the container network)
        port,
        guarded_app(registry, token),
        handler_class=_QuietHandler,
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main(command: list[str]) -> int:
    if not command:
        print("usage: python -m config.metrics_exporter COMMAND [ARG...]", file=sys.stderr)
        return 2
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")
    if not directory:
        print("config.metrics_exporter: PROMETHEUS_MULTIPROC_DIR is not set", file=sys.stderr)
        return 2
    os.makedirs(directory, exist_ok=True)
    raw_port = os.environ.get("METRICS_PORT", "").strip() or "9100"
    if not raw_port.isdigit():
        print(f"config.metrics_exporter: METRICS_PORT must be a port, got {raw_port!r}")
        return 2
    serve(int(raw_port), os.environ.get("METRICS_TOKEN", "").strip())

    child = subprocess.Popen(command)  # noqa: S603  (the container's own command line)

    def forward(signum: int, frame: FrameType | None) -> None:
        child.send_signal(signum)

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, forward)
    status = child.wait()
    return 128 - status if status < 0 else status  # killed by a signal: as a shell reports it


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

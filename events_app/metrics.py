"""Prometheus metrics of the event channels. Names are the product contract.

The WebSocket gauges use `livemax` so that, with `PROMETHEUS_MULTIPROC_DIR` set, the web
process's `/metrics` shows whether *any* live listener holds a connection for the app.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge

CARD_ACTIONS = Counter(
    "larkauth_card_actions_total", "Card button clicks handled, by action.", ["action"]
)
EVENTS = Counter(
    "larkauth_events_total",
    "Feishu events and callbacks received, by type and outcome "
    "(handled, duplicate, ignored, failed, rejected).",
    ["type", "outcome"],
)
WEBSOCKET_CONNECTION_STATUS = Gauge(
    "larkauth_websocket_connection_status",
    "1 while the long connection of the app is up, else 0.",
    ["app_id"],
    multiprocess_mode="livemax",
)
WEBSOCKET_RECONNECTS = Counter(
    "larkauth_websocket_reconnects_total",
    "Attempts to reconnect the long connection after it was lost or failed.",
    ["app_id"],
)

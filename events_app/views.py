"""`POST /lark/events/`: Feishu's HTTP events and card callbacks.

Always a JSON body: lark-oapi's own HTTP handler answers 500 when a handler returns
nothing (docs/feishu.md §6.2), and Feishu shows error 200672 for a body it cannot read. A refused
request gets a 4xx `{code, detail}` and changes nothing; a handler failure gets a 500, so
Feishu delivers the event again (the dedupe row was rolled back with the failure).
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from events_app import callback, metrics
from events_app.dispatcher import dispatch

logger = logging.getLogger(__name__)


@csrf_exempt
def lark_events(request: HttpRequest) -> JsonResponse:
    if not settings.WEBSOCKET_FALLBACK_TO_HTTP:
        # A deployment that takes events only over the long connection exposes no endpoint.
        return _error(404, "http_events_disabled", "Events are received over the long connection.")
    if request.method != "POST":
        response = _error(405, "method_not_allowed", "POST only.")
        response["Allow"] = "POST"
        return response
    try:
        body = request.body
    except RequestDataTooBig:
        return _error(413, "body_too_large", "The body is larger than this endpoint accepts.")
    try:
        verified = callback.verify(body, request.headers)
    except callback.Rejected as exc:
        metrics.EVENTS.labels("unverified", "rejected").inc()
        logger.warning("Refused an event request: %s (%s)", exc.code, exc.detail)
        return _error(exc.status, exc.code, exc.detail)
    if verified.challenge is not None:
        return JsonResponse({"challenge": verified.challenge})
    assert verified.event is not None
    try:
        answer = dispatch(verified.app, verified.event, channel="http")
    except (OperationalError, InterfaceError):
        raise  # the database is unreachable: config/middleware.py answers 503
    except Exception:  # logged by the dispatcher; Feishu retries on a non-200
        return _error(500, "internal_error", "The event could not be handled; retry later.")
    return JsonResponse(answer or {"msg": "success"})


def _error(status: int, code: str, detail: str) -> JsonResponse:
    return JsonResponse({"code": code, "detail": detail}, status=status)

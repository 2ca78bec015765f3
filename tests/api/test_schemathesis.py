"""Schemathesis against the running app: every operation of `/api/v1/schema/`, with valid
and invalid input generated from the schema, answers no 5xx and only what the schema
documents (status, content type, headers, body).

The app is called in-process (WSGI) inside the test's transaction, with a valid key for
the sandbox-backed application; bounded and deterministic (derandomized)."""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    positive_data_acceptance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

pytestmark = [pytest.mark.django_db, pytest.mark.slow]

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
    positive_data_acceptance,
]
# Long-polling (`wait`) is about time, not input: one second is enough to take that path.
LONGEST_WAIT = 1


# The schema needs no database: it is loaded from the app once, when the tests are collected.
schema = schemathesis.openapi.from_wsgi("/api/v1/schema/?format=json", get_wsgi_application())
# The key is the test's own (sent with each call), not generated; unknown query parameters
# are ignored by design, so not "invalid input" that must be refused.
schema.config.generation.update(with_security_parameters=False, allow_extra_parameters=False)
# What the schema calls valid is never refused as malformed (400) or of the wrong type (415):
# the schema states the API's rules ("exactly one of", bounds) as the API checks them.
schema.config.checks.positive_data_acceptance.expected_statuses = [
    "2XX",
    "403",
    "404",
    "422",
    "429",
]


@schema.hook
def map_body(context: Any, body: Any) -> Any:
    if not isinstance(body, dict):
        return body
    if type(body.get("wait")) is int and 0 < body["wait"] <= 30:
        body["wait"] = min(body["wait"], LONGEST_WAIT)
    if isinstance(body.get("user_id"), str):
        # The sandbox's directory route cannot match `{` or `}` in a user_id (aiohttp's
        # default path segment) and answers a plain-text 404 where Feishu answers JSON.
        body["user_id"] = body["user_id"].replace("{", "(").replace("}", ")")
    return body


@pytest.fixture
def in_test_transaction():
    """Like Django's test client: the app must not close the test's database connection at
    the end of each request (it would end the test's transaction)."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@schema.parametrize()
@settings(
    max_examples=50,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_every_operation_answers_as_documented(case, lark, in_test_transaction):
    case.call_and_validate(headers={"Authorization": f"Api-Key {lark.api_key}"}, checks=CHECKS)

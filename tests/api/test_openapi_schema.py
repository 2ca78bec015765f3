"""What `/api/v1/schema/` tells a client: every status an operation answers, the error body,
and the body rules the API enforces."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db

TOKENS = ("/api/v1/tokens/", "post")
AUTH_SESSIONS = ("/api/v1/auth-sessions/", "post")
AUTH_SESSION = ("/api/v1/auth-sessions/{session_id}/", "get")
AUTHORIZATIONS = ("/api/v1/authorizations/", "get")
REVOKE = ("/api/v1/authorizations/{app_id}/{open_id}/", "delete")


@pytest.fixture
def openapi(client) -> dict:
    response = client.get("/api/v1/schema/?format=json")
    assert response.status_code == 200
    return response.json()


def operation(openapi: dict, where: tuple[str, str]) -> dict:
    path, method = where
    return openapi["paths"][path][method]


def error_codes(openapi: dict, where: tuple[str, str], status: int) -> list[str]:
    response = operation(openapi, where)["responses"][str(status)]
    schema = response["content"]["application/json"]["schema"]
    assert schema["required"] == ["code", "detail"]
    return schema["properties"]["code"]["enum"]


@pytest.mark.parametrize(
    ("where", "statuses"),
    [
        (TOKENS, {200, 400, 401, 403, 404, 413, 415, 422, 429, 502, 503}),
        (AUTH_SESSIONS, {200, 201, 400, 401, 403, 404, 413, 415, 422, 429, 502, 503}),
        # Every operation: 503 when the database is down or a secret undecryptable.
        (AUTH_SESSION, {200, 400, 401, 404, 503}),
        (AUTHORIZATIONS, {200, 400, 401, 403, 404, 503}),
        (REVOKE, {204, 400, 401, 403, 404, 503}),
    ],
    ids=["tokens", "auth-sessions", "auth-session", "authorizations", "revoke"],
)
def test_every_status_an_operation_answers_is_documented(openapi, where, statuses):
    assert {int(status) for status in operation(openapi, where)["responses"]} == statuses


def test_the_token_errors_name_their_codes(openapi):
    assert error_codes(openapi, TOKENS, 400) == ["invalid_request", "parse_error"]
    assert error_codes(openapi, TOKENS, 401) == ["invalid_api_key"]
    assert error_codes(openapi, TOKENS, 404) == [
        "authorization_required",
        "unknown_app",
        "unknown_user",
    ]
    assert error_codes(openapi, TOKENS, 415) == ["unsupported_media_type"]
    assert error_codes(openapi, TOKENS, 422) == ["user_unreachable"]
    assert error_codes(openapi, TOKENS, 503) == [
        "feishu_error",
        "token_refresh_failed",
        "database_unavailable",
        "undecryptable",
    ]


def test_authorization_required_documents_the_card_session(openapi):
    response = operation(openapi, TOKENS)["responses"]["404"]
    properties = response["content"]["application/json"]["schema"]["properties"]
    assert properties["auth_session"] == {"$ref": "#/components/schemas/AuthSession"}


def test_rate_limited_documents_retry_after(openapi):
    for where in (TOKENS, AUTH_SESSIONS):
        response = operation(openapi, where)["responses"]["429"]
        assert response["headers"]["Retry-After"]["schema"] == {"type": "integer"}


@pytest.mark.parametrize("where", [TOKENS, AUTH_SESSIONS], ids=["tokens", "auth-sessions"])
def test_a_body_is_required_and_json_only(openapi, where):
    body = operation(openapi, where)["requestBody"]
    assert body["required"] is True
    assert list(body["content"]) == ["application/json"]


@pytest.mark.parametrize("component", ["TokenRequest", "AuthSessionCreate"])
def test_exactly_one_of_open_id_user_id_email_is_stated(openapi, component):
    schema = openapi["components"]["schemas"][component]
    assert schema["oneOf"] == [
        {"required": [name], "properties": {name: {"minLength": 1}}}
        for name in ("open_id", "user_id", "email")
    ]


def test_wait_is_bounded(openapi):
    wait = openapi["components"]["schemas"]["TokenRequest"]["properties"]["wait"]
    assert (wait["minimum"], wait["maximum"]) == (0, 30)


def test_the_api_key_is_a_security_scheme_of_every_operation(openapi):
    assert openapi["components"]["securitySchemes"]["ApiKey"] == {
        "type": "apiKey",
        "in": "header",
        "name": "Authorization",
        "description": "`Api-Key <key>`, from `manage.py create_api_key`.",
    }
    for where in (TOKENS, AUTH_SESSIONS, AUTH_SESSION, AUTHORIZATIONS, REVOKE):
        assert operation(openapi, where)["security"] == [{"ApiKey": []}]


def test_the_authorizations_app_id_parameter_is_documented(openapi):
    [parameter] = operation(openapi, AUTHORIZATIONS)["parameters"]
    assert (parameter["name"], parameter["in"]) == ("app_id", "query")


BODIES_THE_SCHEMA_FORBIDS = [
    {},
    {"open_id": ""},
    {"open_id": "ou_a", "email": "a@example.com"},
    {"open_id": "ou_a", "user_id": "u_a", "email": "a@example.com"},
    {"open_id": "ou_\x01"},
    {"open_id": "o" * 65},
    {"open_id": 16319},  # schemathesis: a number is not a string, even one that could be
    {"open_id": "ou_a", "app_id": 7},
]


@pytest.mark.parametrize(
    ("path", "body"),
    [
        *[("/api/v1/tokens/", body) for body in BODIES_THE_SCHEMA_FORBIDS],
        *[("/api/v1/auth-sessions/", body) for body in BODIES_THE_SCHEMA_FORBIDS],
        ("/api/v1/tokens/", {"open_id": "ou_a", "prompt": True, "wait": -1}),
        ("/api/v1/tokens/", {"open_id": "ou_a", "prompt": True, "wait": 31}),
    ],
)
def test_what_the_schema_forbids_is_a_400(lark, path, body):
    response = lark.api("post", path, body)

    assert (response.status_code, response.json()["code"]) == (400, "invalid_request")


def test_a_blank_app_id_is_allowed_by_the_schema_as_by_the_api(openapi):
    """A blank field must match exactly one branch of its `oneOf`, or none: schemathesis
    took "" as forbidden (it matched both) while the API rightly accepts it."""
    path, method = TOKENS
    body = openapi["paths"][path][method]["requestBody"]["content"]["application/json"]
    name = body["schema"]["$ref"].rsplit("/", 1)[-1]
    app_id = openapi["components"]["schemas"][name]["properties"]["app_id"]
    branches = app_id.get("oneOf", [])
    assert sum(1 for branch in branches if _matches_blank(branch)) <= 1, app_id


def _matches_blank(branch: dict) -> bool:
    return branch.get("minLength", 0) == 0 and branch.get("type") == "string"

"""What the OpenAPI document (`/api/v1/schema/`) says beyond what drf-spectacular infers:
the API key, every error a view answers with its `code`s, and the constraints of a body
that the serializers check in `validate()` (exactly one of open_id, user_id, email)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.plumbing import ResolvedComponent
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse

from sessions_app.api.serializers import ID_PATTERN, USER_FIELDS, UserTargetSerializer

SECURITY_SCHEME = "ApiKey"
AUTH_SESSION_REF = {"$ref": "#/components/schemas/AuthSession"}

# What each error code means, as the documentation shows it.
ERROR_CODES = {
    "invalid_request": "The body, a query or path parameter is not valid (`errors` says which).",
    "parse_error": "The body is not JSON, or is nested too deeply.",
    "invalid_api_key": "No `Authorization: Api-Key <key>`, or the key is unknown or expired.",
    "forbidden": "The key may not use this application.",
    "authorization_required": "The user has not authorized the application (or must again); "
    "`auth_session` is the card session when one was sent or reused.",
    "unknown_app": "No active application with that app_id (or none to default to).",
    "unknown_user": "No Feishu user is known by that user_id or email.",
    "not_found": "No such resource.",
    "request_too_large": "The body is larger than the server accepts "
    "(DATA_UPLOAD_MAX_MEMORY_SIZE).",
    "unsupported_media_type": "The body is not `application/json`.",
    "user_unreachable": "Feishu says the application cannot reach this user: outside the "
    "app's availability, unknown or deactivated.",
    "rate_limited": "Too many authorization requests for this user; see `Retry-After`.",
    "feishu_error": "Feishu answered with an error: 502 when retrying will not help, 503 when "
    "it may.",
    "token_refresh_failed": "Feishu could not refresh the token right now; retry shortly.",
    "database_unavailable": "larkauth cannot reach its database; retry shortly.",
    "undecryptable": "A stored secret cannot be decrypted with any key of "
    "LARKAUTH_ENCRYPTION_KEYS: an operator must restore the key (config/middleware.py).",
}
# Any operation can answer these (config/middleware.py).
UNAVAILABLE = ("database_unavailable", "undecryptable")
# Any operation can answer a 400 (a NUL in the URL is refused before any view); one with a
# body also for a body that is not JSON.
BAD_REQUEST = ("invalid_request",)
BAD_BODY = ("invalid_request", "parse_error")
RETRY_AFTER = OpenApiParameter(
    "Retry-After",
    int,
    OpenApiParameter.HEADER,
    response=[429],
    description="Seconds until a new authorization request for this user is accepted.",
)
APP_ID = OpenApiParameter(
    "app_id",
    str,
    OpenApiParameter.QUERY,
    pattern=ID_PATTERN,
    description="The application; without it, the default one (LARK_APP_ID, else the only "
    "active one).",
)
AUTHORIZATION_PATH = [
    OpenApiParameter("app_id", str, OpenApiParameter.PATH, pattern=ID_PATTERN),
    OpenApiParameter("open_id", str, OpenApiParameter.PATH, pattern=ID_PATTERN),
]


def errors(by_status: Mapping[int, Sequence[str]]) -> dict[int, OpenApiResponse]:
    """The error responses of an operation, `{status: codes}`, each a `{code, detail}`; a 503
    for UNAVAILABLE is added to every operation."""
    with_unavailable = {**by_status, 503: (*by_status.get(503, ()), *UNAVAILABLE)}
    return {status: _error_response(codes) for status, codes in with_unavailable.items()}


def key_errors() -> dict[int, Sequence[str]]:
    """What every operation that needs an API key can answer."""
    return {400: BAD_REQUEST, 401: ("invalid_api_key",)}


def _error_response(codes: Sequence[str]) -> OpenApiResponse:
    properties: dict[str, Any] = {
        "code": {"type": "string", "enum": list(codes)},
        "detail": {"description": "For people; may change.", "type": "string"},
    }
    if "invalid_request" in codes:
        properties["errors"] = {
            "type": "object",
            "description": "Messages by field (`non_field_errors` for the body as a whole).",
            "additionalProperties": True,
        }
    if "authorization_required" in codes:
        properties["reason"] = {"type": "string"}
        properties["auth_session"] = AUTH_SESSION_REF
    schema = {"type": "object", "required": ["code", "detail"], "properties": properties}
    description = "\n".join(f"- `{code}`: {ERROR_CODES[code]}" for code in codes)
    return OpenApiResponse(response=schema, description=description)


class ApiSchema(AutoSchema):
    """The API's AutoSchema: the key as a security scheme (it is checked by a permission
    class, which drf-spectacular cannot see), and "exactly one of" for user targets."""

    def get_auth(self) -> list[dict[str, list[str]]]:
        if not self.view.get_permissions():
            return []
        self.registry.register_on_missing(
            ResolvedComponent(
                name=SECURITY_SCHEME,
                type=ResolvedComponent.SECURITY_SCHEMA,
                object=SECURITY_SCHEME,
                schema={
                    "type": "apiKey",
                    "in": "header",
                    "name": "Authorization",
                    "description": "`Api-Key <key>`, from `manage.py create_api_key`.",
                },
            )
        )
        return [{SECURITY_SCHEME: []}]

    def _get_request_for_media_type(self, serializer: Any, direction: Any = "request") -> Any:
        schema, required = super()._get_request_for_media_type(serializer, direction)
        # A user target has no required field of its own, yet a body is needed (see oneOf).
        return schema, required or _is_user_target(serializer)

    def _map_serializer(
        self, serializer: Any, direction: Any, bypass_extensions: bool = False
    ) -> dict[str, Any]:
        schema: dict[str, Any] = super()._map_serializer(serializer, direction, bypass_extensions)
        for field in schema.get("properties", {}).values():
            # drf-spectacular writes a blank-allowed field as oneOf [the field, blank]; ""
            # matched both, which makes it invalid by the schema though the API accepts it.
            branches = field.get("oneOf", [])
            if any(branch.get("maxLength") == 0 for branch in branches):
                for branch in branches:
                    if branch.get("maxLength") != 0:
                        branch.setdefault("minLength", 1)
        if _is_user_target(serializer):
            # Exactly one of the fields is given (not blank).
            schema["oneOf"] = [
                {"required": [name], "properties": {name: {"minLength": 1}}} for name in USER_FIELDS
            ]
        return schema


def _is_user_target(serializer: Any) -> bool:
    return isinstance(serializer, UserTargetSerializer) or (
        isinstance(serializer, type) and issubclass(serializer, UserTargetSerializer)
    )

from __future__ import annotations

from datetime import UTC
from typing import Any

from django.core.validators import RegexValidator
from django.db import models
from rest_framework import serializers

from sessions_app.models import AuthMethod, SessionState, UserAuthSession
from sessions_app.services.oauth import start_url

# A request names its user by exactly one of these (a blank one counts as not given).
USER_FIELDS = ("open_id", "user_id", "email")
_ONE_OF = "Give exactly one of open_id, user_id, email."
# No Feishu id holds a control character (and PostgreSQL cannot store NUL); stated as a
# pattern so that the OpenAPI schema says it too.
ID_PATTERN = r"^[^\x00-\x1f\x7f]*$"
_NO_CONTROL_CHARACTERS = RegexValidator(
    ID_PATTERN, "Control characters are not allowed.", code="invalid"
)


class UTCDateTimeField(serializers.DateTimeField):
    """The API speaks UTC: `2026-01-20T01:30:00Z`, whatever TIME_ZONE people read."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("default_timezone", UTC)
        super().__init__(*args, **kwargs)


class UTCModelSerializer(serializers.ModelSerializer):
    serializer_field_mapping = {
        **serializers.ModelSerializer.serializer_field_mapping,
        models.DateTimeField: UTCDateTimeField,
    }


class StrictCharField(serializers.CharField):
    """Only a JSON string: DRF would take the number 16319 as "16319", which the schema
    (`type: string`) forbids."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


def _id_field(help_text: str) -> serializers.CharField:
    return StrictCharField(
        required=False,
        allow_blank=True,
        max_length=64,
        trim_whitespace=False,  # taken as sent, as the schema describes it
        validators=[_NO_CONTROL_CHARACTERS],
        help_text=help_text,
    )


class UserTargetSerializer(serializers.Serializer):
    app_id = _id_field("The application; without it, the default one.")
    open_id = _id_field(_ONE_OF)
    user_id = _id_field(_ONE_OF)
    email = serializers.EmailField(
        required=False,
        allow_blank=True,
        max_length=254,
        trim_whitespace=False,
        help_text=_ONE_OF,
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        given = [name for name in USER_FIELDS if attrs.get(name)]
        if len(given) != 1:
            raise serializers.ValidationError("Give exactly one of open_id, user_id or email.")
        return attrs


class TokenRequestSerializer(UserTargetSerializer):
    prompt = serializers.BooleanField(default=False)
    wait = serializers.IntegerField(
        default=0,
        min_value=0,
        max_value=30,
        help_text="With prompt: seconds (at most 30) to wait for the user to authorize.",
    )


class AuthSessionCreateSerializer(UserTargetSerializer):
    method = serializers.ChoiceField(choices=[AuthMethod.CARD, AuthMethod.LINK], default="card")
    force = serializers.BooleanField(default=False)


class TokenSerializer(serializers.Serializer):
    access_token = serializers.CharField()
    token_type = serializers.CharField()
    expires_at = UTCDateTimeField()
    scope = serializers.CharField()
    open_id = serializers.CharField()
    user_id = serializers.CharField()
    name = serializers.CharField()


class AuthSessionSerializer(UTCModelSerializer):
    app_id = serializers.CharField(source="app.app_id")
    authorize_url = serializers.SerializerMethodField()

    class Meta:
        model = UserAuthSession
        fields = (
            "id",
            "app_id",
            "open_id",
            "user_id",
            "user_name",
            "state",
            "auth_method",
            "failure_reason",
            "authorize_url",
            "created_at",
            "expires_at",
            "completed_at",
        )

    def get_authorize_url(self, session: UserAuthSession) -> str | None:
        if session.auth_method == AuthMethod.LINK and session.state == SessionState.PENDING:
            return start_url(session)
        return None


class AuthorizationSerializer(UTCModelSerializer):
    app_id = serializers.CharField(source="app.app_id")
    name = serializers.CharField(source="user_name")

    class Meta:
        model = UserAuthSession
        fields = (
            "app_id",
            "open_id",
            "user_id",
            "union_id",
            "name",
            "email",
            "state",
            "scope",
            "token_expires_at",
            "refresh_token_expires_at",
            "last_refreshed_at",
            "completed_at",
        )

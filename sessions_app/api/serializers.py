from __future__ import annotations

from typing import Any

from rest_framework import serializers

from sessions_app.models import AuthMethod, SessionState, UserAuthSession
from sessions_app.services.authorization import start_url


class UserTargetSerializer(serializers.Serializer):
    app_id = serializers.CharField(required=False, allow_blank=True, max_length=64)
    open_id = serializers.CharField(required=False, allow_blank=True, max_length=64)
    user_id = serializers.CharField(required=False, allow_blank=True, max_length=64)
    email = serializers.EmailField(required=False, allow_blank=True)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        given = [name for name in ("open_id", "user_id", "email") if attrs.get(name)]
        if len(given) != 1:
            raise serializers.ValidationError("Give exactly one of open_id, user_id or email.")
        return attrs


class TokenRequestSerializer(UserTargetSerializer):
    prompt = serializers.BooleanField(default=False)
    wait = serializers.IntegerField(default=0, min_value=0, max_value=30)


class AuthSessionCreateSerializer(UserTargetSerializer):
    method = serializers.ChoiceField(choices=[AuthMethod.CARD, AuthMethod.LINK], default="card")
    force = serializers.BooleanField(default=False)


class TokenSerializer(serializers.Serializer):
    access_token = serializers.CharField()
    token_type = serializers.CharField()
    expires_at = serializers.DateTimeField()
    scope = serializers.CharField()
    open_id = serializers.CharField()
    user_id = serializers.CharField()
    name = serializers.CharField()


class AuthSessionSerializer(serializers.ModelSerializer):
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


class AuthorizationSerializer(serializers.ModelSerializer):
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

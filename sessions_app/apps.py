from django.apps import AppConfig


class SessionsAppConfig(AppConfig):
    name = "sessions_app"
    verbose_name = "Authorizations"

    def ready(self) -> None:
        from sessions_app import checks, signals  # noqa: F401  (registers checks and hooks)

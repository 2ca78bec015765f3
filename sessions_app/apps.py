from django.apps import AppConfig


class SessionsAppConfig(AppConfig):
    name = "sessions_app"
    verbose_name = "Authorizations"

    def ready(self) -> None:
        # Registers checks and hooks.
        from sessions_app import beat_runs, checks, signals  # noqa: F401

from django.apps import AppConfig


class LarkauthConfig(AppConfig):
    name = "larkauth"
    verbose_name = "larkauth core"

    def ready(self) -> None:
        # lark-oapi's records go through the handlers of settings.LOGGING (its own handler
        # is removed where it is loaded: larkauth.feishu.sdk); redact them like the rest.
        from larkauth import redaction

        redaction.install()

import logging

from django.apps import AppConfig


class LarkauthConfig(AppConfig):
    name = "larkauth"
    verbose_name = "larkauth core"

    def ready(self) -> None:
        # lark-oapi logs to stdout through a handler of its own. Send its records through
        # the handler of settings.LOGGING instead: one format (JSON in production), and the
        # same redaction as everything else.
        import lark_oapi.core.log  # noqa: F401  (creates the "Lark" logger)

        from larkauth import redaction

        lark_logger = logging.getLogger(redaction.LARK_LOGGER)
        for handler in list(lark_logger.handlers):
            lark_logger.removeHandler(handler)
        lark_logger.propagate = True
        redaction.install()

from django.apps import AppConfig


class LarkauthConfig(AppConfig):
    name = "larkauth"
    verbose_name = "larkauth core"

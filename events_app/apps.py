from django.apps import AppConfig
from django.db.models.signals import post_delete, post_save


class EventsAppConfig(AppConfig):
    name = "events_app"
    verbose_name = "Feishu events"

    def ready(self) -> None:
        from events_app.callback import forget_apps
        from sessions_app.models import Application

        for signal in (post_save, post_delete):
            signal.connect(forget_apps, sender=Application, dispatch_uid="events_forget_apps")

"""The Celery app, configured from Django settings (`CELERY_*`; see config/settings.py).

Worker: `celery -A config worker`; beat: `celery -A config beat` (schedules in the database,
editable in the admin). Without CELERY_BROKER_URL/REDIS_URL the broker is embedded and
needs no server (development).
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("larkauth")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

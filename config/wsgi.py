import os

from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

application = get_wsgi_application()

# gunicorn runs no system checks: a production start without its secrets (or with a bad
# setting) stops here with the message `manage.py check` gives, not at the first request.
_errors = [
    message for message in checks.run_checks(tags=[checks.Tags.security]) if message.is_serious()
]
if _errors:
    raise ImproperlyConfigured("\n".join(str(message) for message in _errors))

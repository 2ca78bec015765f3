"""The memory reference: bare Django + DRF, one view reading one row of PostgreSQL, served by
the same gunicorn settings (config/gunicorn.py) as larkauth. Never used in production."""

import os

import environ
from django.db import connection
from django.urls import path
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

SECRET_KEY = "bench-bare-secret-key-not-for-production-0123456789"
DEBUG = False
ALLOWED_HOSTS = ["*"]
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", "rest_framework"]
MIDDLEWARE: list[str] = []
ROOT_URLCONF = "bench.bare_settings"
DATABASES = {"default": environ.Env.db_url_config(os.environ["DATABASE_URL"])}
USE_TZ = True
REST_FRAMEWORK: dict[str, list[str]] = {
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": [],
}


class OneRow(APIView):
    def post(self, request: Request) -> Response:
        with connection.cursor() as cursor:
            cursor.execute("SELECT app FROM django_migrations ORDER BY id LIMIT 1")
            (app,) = cursor.fetchone() or ("",)
        return Response({"app": app})


urlpatterns = [path("one-row", OneRow.as_view())]

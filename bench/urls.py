from django.urls import path
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from config.urls import urlpatterns as project_urls
from sessions_app.models import Application


class PrimaryKeyLookup(APIView):
    """The reference: a minimal DRF view doing one primary-key lookup."""

    authentication_classes = []
    permission_classes = []

    def post(self, request: Request, pk: int) -> Response:
        app = Application.objects.only("app_id").get(pk=pk)
        return Response({"app_id": app.app_id})


urlpatterns = [
    path("bench/reference/<int:pk>", PrimaryKeyLookup.as_view()),
    *project_urls,
]

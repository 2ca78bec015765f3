from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from sessions_app.api import views

urlpatterns = [
    path("tokens/", views.TokenView.as_view(), name="api-tokens"),
    path("auth-sessions/", views.AuthSessionCreateView.as_view(), name="api-auth-sessions"),
    path(
        "auth-sessions/<uuid:session_id>/",
        views.AuthSessionDetailView.as_view(),
        name="api-auth-session",
    ),
    path("authorizations/", views.AuthorizationListView.as_view(), name="api-authorizations"),
    path(
        "authorizations/<str:app_id>/<str:open_id>/",
        views.AuthorizationDetailView.as_view(),
        name="api-authorization",
    ),
    path("schema/", SpectacularAPIView.as_view(permission_classes=[]), name="api-schema"),
    path(
        "docs/",
        SpectacularSwaggerView.as_view(url_name="api-schema", permission_classes=[]),
        name="api-docs",
    ),
]

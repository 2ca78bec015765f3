from django.urls import path

from sessions_app import views

urlpatterns = [
    path("oauth/start/<uuid:session_id>", views.oauth_start, name="oauth-start"),
    path("oauth/callback", views.oauth_callback, name="oauth-callback"),
]

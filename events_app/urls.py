from django.urls import path

from events_app import views

urlpatterns = [
    path("lark/events/", views.lark_events, name="lark-events"),
]

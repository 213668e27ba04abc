from django.urls import path

from . import views

app_name = "webhooks"

urlpatterns = [
    path("recurrente/", views.recurrente, name="recurrente"),
]

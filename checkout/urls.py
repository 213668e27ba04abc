from django.urls import path

from . import views

app_name = "checkout"

urlpatterns = [
    path("success/", views.success, name="success"),
    path("success/status/", views.success_status, name="success_status"),
    path("recover/<str:token>/", views.recover, name="recover"),
    path("unsubscribe/<str:token>/", views.unsubscribe, name="unsubscribe"),
]

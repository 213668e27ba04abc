from django.urls import path

from . import views

app_name = "customers"

urlpatterns = [
    path("set-password/<str:uidb64>/<str:token>/", views.set_password, name="set_password"),
]

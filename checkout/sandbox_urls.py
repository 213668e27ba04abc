from django.urls import path

from . import views

app_name = "sandbox"

urlpatterns = [
    path("checkout/<str:checkout_id>/", views.sandbox_checkout, name="checkout"),
    path("checkout/<str:checkout_id>/event/", views.sandbox_subscription_event, name="subscription_event"),
]

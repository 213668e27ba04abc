from django.urls import path

from . import views

app_name = "checkout"

# Mounted at the root (webmagic/urls.py): the purchase form sits under the site it buys.
urlpatterns = [
    path("sites/<slug:slug>/purchase/", views.purchase, name="purchase"),
    path("checkout/success/", views.success, name="success"),
    path("checkout/success/status/", views.success_status, name="success_status"),
    path("checkout/success/password/", views.success_password_set, name="success_password"),
    path("checkout/recover/<str:token>/", views.recover, name="recover"),
    path("checkout/unsubscribe/<str:token>/", views.unsubscribe, name="unsubscribe"),
]

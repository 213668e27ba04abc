from django.urls import path

from checkout import views as checkout_views

from . import views

app_name = "sites"

urlpatterns = [
    path("<slug:slug>/", views.site_page, name="page"),
    path("<slug:slug>/raw/", views.site_document, name="document"),
    # The purchase form lives in the checkout app; its URL sits under the site it buys.
    path("<slug:slug>/purchase/", checkout_views.purchase, name="purchase"),
]

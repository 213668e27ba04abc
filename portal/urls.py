"""The portal's own pages, mounted at /portal/ (webmagic/urls.py) beside the account pages of
the customers app (sign in, passwords, account)."""

from django.urls import path

from . import views

app_name = "portal"

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("sites/<slug:slug>/", views.site_detail, name="site"),
    path("sites/<slug:slug>/download/", views.download, name="download"),
    path("payments/<str:payment_id>/receipt/", views.receipt, name="receipt"),
]

from django.urls import path

from . import views

app_name = "sites"

urlpatterns = [
    path("<slug:slug>/", views.site_page, name="page"),
    path("<slug:slug>/raw/", views.site_document, name="document"),
]

"""The project's URLs plus stand-ins for the hosting routes (hosting:start, hosting:cancel) that
the checkout app's hosting flow provides, so the portal's buttons can be tested on their own."""

from django.http import HttpResponse
from django.urls import include, path

from webmagic.urls import urlpatterns as project_urlpatterns


def _stub(request, slug):
    return HttpResponse(f"hosting stub for {slug}")


hosting_patterns = (
    [
        path("portal/sites/<slug:slug>/hosting/start/", _stub, name="start"),
        path("portal/sites/<slug:slug>/hosting/cancel/", _stub, name="cancel"),
    ],
    "hosting",
)

urlpatterns = [path("", include(hosting_patterns)), *project_urlpatterns]

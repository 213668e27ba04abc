import factory

from sites.models import Site, SiteVersion


class SiteFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Site

    slug = factory.Sequence(lambda n: f"business-{n}")
    business_name = factory.Sequence(lambda n: f"Business {n}")
    business_type = "Plumber"


class SiteVersionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = SiteVersion

    site = factory.SubFactory(SiteFactory)
    number = factory.Sequence(lambda n: n + 1)
    html = "<!doctype html><html><body><h1>Hello from the site</h1></body></html>"
    is_current = True

from .models import Site, SiteVersion


def site_for_page(*, slug: str) -> Site | None:
    return Site.objects.select_related("owner").filter(slug=slug).first()


def current_version(*, site: Site) -> SiteVersion | None:
    return site.versions.filter(is_current=True).first()


def demo_sites_for_home(limit: int = 12) -> list[Site]:
    return list(Site.objects.filter(status=Site.Status.PREVIEW).order_by("business_name")[:limit])

import logging

from django.db import transaction
from django.db.models import Max

from .models import Site, SiteVersion

logger = logging.getLogger(__name__)


@transaction.atomic
def site_version_publish(*, site: Site, html: str, note: str = "") -> SiteVersion:
    """Store new generated HTML as the site's next version and make it the current one."""
    Site.objects.select_for_update().get(pk=site.pk)  # serialise publishers of one site
    number = (site.versions.aggregate(n=Max("number"))["n"] or 0) + 1
    site.versions.filter(is_current=True).update(is_current=False)
    version = SiteVersion.objects.create(site=site, number=number, html=html, note=note, is_current=True)
    logger.info("site %s: published version %s", site.pk, number)
    return version


@transaction.atomic
def site_version_make_current(*, version: SiteVersion) -> SiteVersion:
    """Roll back (or forward) to an existing version."""
    Site.objects.select_for_update().get(pk=version.site_id)
    SiteVersion.objects.filter(site_id=version.site_id, is_current=True).exclude(pk=version.pk).update(is_current=False)
    SiteVersion.objects.filter(pk=version.pk).update(is_current=True)
    version.is_current = True
    logger.info("site %s: version %s made current", version.site_id, version.number)
    return version

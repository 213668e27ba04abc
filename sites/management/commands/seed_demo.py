import secrets
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from sites.models import Site
from sites.services import site_version_publish

DEMO_DIR = Path(__file__).resolve().parents[2] / "demo_sites"
DEMO_SITES = [
    {"slug": "la-plumbing-pros", "business_name": "LA Plumbing Pros", "business_type": "Plumber", "business_city": "Los Angeles, CA"},
    {"slug": "casa-verde-cafe", "business_name": "Casa Verde Café", "business_type": "Café & bakery", "business_city": "Antigua Guatemala"},
    {"slug": "brightsmile-dental", "business_name": "BrightSmile Dental", "business_type": "Dentist", "business_city": "Austin, TX"},
]
STAFF_EMAIL = "staff@webmagic.example"


class Command(BaseCommand):
    help = "Load three demo preview sites and a staff login (prints the login). Safe to run again."

    def add_arguments(self, parser):
        parser.add_argument("--force", action="store_true", help="allow in production mode")

    def handle(self, *args, force=False, **options):
        if settings.PRODUCTION and not force:
            raise CommandError("seed_demo creates a staff login; refusing in production without --force")
        for spec in DEMO_SITES:
            self._seed_site(spec)
        password = secrets.token_urlsafe(12)
        self._seed_staff(password)
        self.stdout.write(self.style.SUCCESS(f"Staff login: {STAFF_EMAIL} / {password}  (new password on every run)"))

    def _seed_site(self, spec):
        html = (DEMO_DIR / f"{spec['slug']}.html").read_text(encoding="utf-8")
        site, created = Site.objects.get_or_create(slug=spec["slug"], defaults=spec)
        current = site.versions.filter(is_current=True).first()
        if current is None or current.html != html:
            site_version_publish(site=site, html=html, note="demo content")
        state = "created" if created else site.status
        self.stdout.write(f"Demo site {site.slug} ({state}): {settings.SITE_URL}/sites/{site.slug}/")

    def _seed_staff(self, password):
        user_model = get_user_model()
        user = user_model.objects.filter(email__iexact=STAFF_EMAIL).first()
        if user is None:
            user = user_model.objects.create_superuser(STAFF_EMAIL, password, full_name="Demo Staff")
        else:
            user.set_password(password)
            user.is_staff = user.is_superuser = user.is_active = True
            user.save()

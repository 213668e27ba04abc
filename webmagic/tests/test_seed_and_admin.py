import re
from io import StringIO

import pytest
from django.contrib.auth import authenticate
from django.core.management import call_command

from checkout.tests.factories import CheckoutSessionFactory, PaymentFactory, SubscriptionFactory
from sites.models import Site, SiteVersion
from sites.tests.factories import SiteVersionFactory
from webhooks.models import WebhookEvent
from webmagic.models import EmailLog

pytestmark = pytest.mark.django_db


def test_seed_demo_creates_three_preview_sites_and_a_working_staff_login(rf):
    out = StringIO()
    call_command("seed_demo", stdout=out)
    assert Site.objects.filter(status=Site.Status.PREVIEW).count() == 3
    assert SiteVersion.objects.filter(is_current=True).count() == 3
    for version in SiteVersion.objects.all():
        assert "<html" in version.html.lower() and "<style" in version.html.lower()
    email, password = re.search(r"Staff login: (\S+) / (\S+)", out.getvalue()).groups()
    user = authenticate(rf.get("/"), username=email, password=password)
    assert user is not None and user.is_staff


def test_seed_demo_is_idempotent():
    call_command("seed_demo", stdout=StringIO())
    call_command("seed_demo", stdout=StringIO())
    assert Site.objects.count() == 3
    assert SiteVersion.objects.count() == 3


ADMIN_PAGES = [
    "/admin/", "/admin/sites/site/", "/admin/sites/siteversion/", "/admin/sites/editrequest/",
    "/admin/sites/domainverificationrecord/", "/admin/customers/customeruser/", "/admin/checkout/checkoutsession/",
    "/admin/checkout/payment/", "/admin/checkout/subscription/", "/admin/webhooks/webhookevent/",
    "/admin/webmagic/emaillog/", "/admin/django_celery_beat/periodictask/",
]


@pytest.mark.parametrize("url", ADMIN_PAGES)
def test_admin_pages_render_for_staff(staff_client, url):
    SiteVersionFactory()
    CheckoutSessionFactory()
    PaymentFactory()
    SubscriptionFactory()
    WebhookEvent.objects.create(delivery_id="msg_a", event_type="payment_intent.succeeded", raw_body="{}", payload={"a": 1})
    EmailLog.objects.create(kind=EmailLog.Kind.WELCOME, to_email="a@example.com")
    response = staff_client.get(url)
    assert response.status_code == 200


def test_admin_requires_staff(client):
    response = client.get("/admin/sites/site/")
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]

"""The whole hosting cycle in sandbox mode, as a new user runs it with `make run`: start hosting
in the portal, press Pay on the sandbox page, and the sandbox's signed deliveries travel over
real HTTP to a live server, which processes them (Celery eager). Then staff push the other
subscription events from the sandbox page and the management command, and the owner cancels."""

from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse

from checkout.models import CheckoutSession, Payment, SandboxCheckout, Subscription
from customers.tests.factories import CustomerFactory
from sites.models import Site
from sites.tests.factories import SiteFactory
from webhooks.models import WebhookEvent
from webmagic.models import EmailLog


@pytest.fixture
def sandbox_live(live_server, settings):
    settings.SITE_URL = live_server.url
    settings.RECURRENTE_SANDBOX = True
    settings.LOGIN_URL = "/portal/login/"
    return live_server


def site_status(site):
    return Site.objects.get(pk=site.pk).status


@pytest.mark.django_db(transaction=True)
def test_a_new_user_runs_the_whole_hosting_cycle_in_the_sandbox(sandbox_live, django_user_model):
    owner = CustomerFactory(email="maria.lopez@example.com")
    site = SiteFactory(slug="la-plumbing-pros", business_name="LA Plumbing Pros", status=Site.Status.OWNED, owner=owner)
    browser = Client()
    browser.force_login(owner)

    response = browser.post(reverse("hosting:start", kwargs={"slug": site.slug}))
    assert response.status_code == 303
    checkout_url = response["Location"]
    assert checkout_url.startswith(sandbox_live.url + "/sandbox/recurrente/checkout/ch_sbx")
    page = browser.get(checkout_url.removeprefix(sandbox_live.url))
    assert page.status_code == 200 and "Website hosting — LA Plumbing Pros" in page.content.decode()

    paid = browser.post(checkout_url.removeprefix(sandbox_live.url), {"action": "pay"})
    assert paid["Location"] == sandbox_live.url + "/portal/sites/la-plumbing-pros/hosting/returned/"
    back = browser.get("/portal/sites/la-plumbing-pros/hosting/returned/")
    assert back.status_code == 303 and back["Location"] == "/portal/sites/la-plumbing-pros/?subscription=started"

    # By now subscription.create and the first payment went over HTTP and were processed.
    assert set(WebhookEvent.objects.values_list("event_type", "status")) == {
        ("subscription.create", WebhookEvent.Status.PROCESSED), ("payment_intent.succeeded", WebhookEvent.Status.PROCESSED),
    }
    subscription = Subscription.objects.get()
    assert subscription.status == Subscription.Status.ACTIVE and subscription.current_period_end is not None
    assert site_status(site) == Site.Status.ACTIVE
    assert Payment.objects.get().subscription == subscription
    assert CheckoutSession.objects.get().status == CheckoutSession.Status.COMPLETED
    assert EmailLog.objects.filter(kind=EmailLog.Kind.HOSTING_ACTIVATED).count() == 1
    live_page = Client().get(f"/sites/{site.slug}/")  # a visitor sees the live site, no purchase bar
    assert live_page.status_code == 200 and "claim-bar" not in live_page.content.decode()

    # Staff: the buttons on the sandbox page.
    staff = Client()
    staff.force_login(django_user_model.objects.create_superuser("boss@webmagic.test", "correct horse battery staple"))
    sandbox_page = checkout_url.removeprefix(sandbox_live.url)
    assert "Staff: send a subscription event" in staff.get(sandbox_page).content.decode()
    staff.post(sandbox_page + "event/", {"event_type": "subscription.past_due"})
    assert Subscription.objects.get().status == Subscription.Status.PAST_DUE
    assert site_status(site) == Site.Status.ACTIVE
    assert EmailLog.objects.filter(kind=EmailLog.Kind.PAYMENT_PROBLEM).count() == 1

    staff.post(sandbox_page + "event/", {"event_type": "subscription.pause"})
    assert site_status(site) == Site.Status.SUSPENDED
    assert EmailLog.objects.filter(kind=EmailLog.Kind.HOSTING_SUSPENDED).count() == 1

    # Staff who prefer the shell: the management command, by site slug.
    out = StringIO()
    call_command("sandbox_subscription", site.slug, "unpause", stdout=out)
    assert "subscription.unpause sent" in out.getvalue()
    assert site_status(site) == Site.Status.ACTIVE and Subscription.objects.get().status == Subscription.Status.ACTIVE

    # The owner cancels in the portal: the sandbox sends subscription.cancel, the site stays live.
    confirm = browser.get(reverse("hosting:cancel", kwargs={"slug": site.slug}))
    assert confirm.status_code == 200
    done = browser.post(reverse("hosting:cancel", kwargs={"slug": site.slug}))
    assert done.status_code == 303 and done["Location"] == "/portal/sites/la-plumbing-pros/"
    subscription = Subscription.objects.get()
    assert subscription.cancel_requested_at is not None and subscription.status == Subscription.Status.CANCELLED
    assert WebhookEvent.objects.get(event_type="subscription.cancel").status == WebhookEvent.Status.PROCESSED
    assert site_status(site) == Site.Status.ACTIVE
    assert SandboxCheckout.objects.get().subscription_status == "cancelled"


@pytest.mark.django_db
def test_the_command_refuses_what_it_cannot_do(settings):
    with pytest.raises(CommandError, match="Unknown event"):
        call_command("sandbox_subscription", "su_x", "explode")
    with pytest.raises(CommandError, match="not a sandbox subscription"):
        call_command("sandbox_subscription", "su_unknown", "pause")
    with pytest.raises(CommandError, match="no hosting subscription"):
        call_command("sandbox_subscription", SiteFactory().slug, "pause")
    settings.RECURRENTE_SANDBOX = False
    with pytest.raises(CommandError, match="Sandbox mode is off"):
        call_command("sandbox_subscription", "su_x", "pause")


@pytest.mark.django_db
def test_the_command_accepts_a_subscription_id_and_the_full_event_name(settings, django_capture_on_commit_callbacks, monkeypatch):
    sent = []
    monkeypatch.setattr("checkout.sandbox.sandbox_send_later", lambda **kwargs: sent.append(kwargs))
    SandboxCheckout.objects.create(id="ch_sbxabc", request={"items": [{"charge_type": "recurring"}]}, subscription_id="su_sbxabc",
                                   subscription_status="active")
    call_command("sandbox_subscription", "su_sbxabc", "subscription.cancel", stdout=StringIO())
    assert [s["event_type"] for s in sent] == ["subscription.cancel"]
    assert SandboxCheckout.objects.get().subscription_status == "cancelled"

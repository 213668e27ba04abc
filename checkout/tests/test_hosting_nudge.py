"""The hosting nudge (DESIGN §6): one email, 24 hours after the purchase, to owners who have not
started hosting; once, even when two beat ticks run at once."""

import re
import threading
from datetime import timedelta

import pytest
from django.core import mail
from django.db import connection
from django.utils import timezone

from checkout.models import Subscription
from checkout.services.hosting import hosting_nudges_send
from checkout.tasks import send_hosting_nudges
from checkout.tests.factories import SubscriptionFactory
from customers.tests.factories import CustomerFactory
from sites.models import Site
from sites.tests.factories import SiteFactory
from webmagic.models import EmailLog, EmailSuppression


def owned(hours_ago: float, **kwargs) -> Site:
    owner = kwargs.pop("owner", None) or CustomerFactory(full_name="María <b>López</b>")
    return SiteFactory(
        status=kwargs.pop("status", Site.Status.OWNED), owner=owner, purchased_at=timezone.now() - timedelta(hours=hours_ago), **kwargs
    )


def nudges():
    return EmailLog.objects.filter(kind=EmailLog.Kind.HOSTING_NUDGE)


@pytest.mark.django_db
def test_an_owner_who_has_not_started_hosting_after_a_day_gets_one_nudge(django_capture_on_commit_callbacks):
    site = owned(25, slug="la-plumbing-pros", business_name="LA Plumbing Pros")
    with django_capture_on_commit_callbacks(execute=True):
        assert send_hosting_nudges.delay().get() == 1
    with django_capture_on_commit_callbacks(execute=True):
        assert send_hosting_nudges.delay().get() == 0

    [log] = nudges()
    assert log.dedupe_key == f"hosting_nudge:{site.pk}" and log.to_email == site.owner.email
    assert Site.objects.get(pk=site.pk).hosting_nudge_sent_at is not None
    [message] = mail.outbox
    html = message.alternatives[0][0]
    buttons = re.findall(r'<a href="([^"]+)" style="display:inline-block', html)
    assert buttons == ["http://testserver/portal/sites/la-plumbing-pros/"]  # exactly one button: activate
    assert "Activate hosting" in html and "$95 a month" in html
    assert "Hi María," in html and "<b>López</b>" not in html  # greeted by first name, never as markup
    assert "http://testserver/portal/sites/la-plumbing-pros/" in message.body


@pytest.mark.django_db
@pytest.mark.parametrize("case", ["too_recent", "has_subscription", "active", "suspended", "preview", "already_nudged"])
def test_who_is_not_nudged(case):
    if case == "too_recent":
        owned(23)
    elif case == "has_subscription":
        site = owned(48)
        SubscriptionFactory(site=site, status=Subscription.Status.UNABLE_TO_START)  # it was started, even if it failed
    elif case in ("active", "suspended"):
        owned(48, status=case)
    elif case == "preview":
        SiteFactory(purchased_at=timezone.now() - timedelta(days=3))
    else:
        owned(48, hosting_nudge_sent_at=timezone.now() - timedelta(days=1))
    assert hosting_nudges_send() == 0
    assert not nudges().exists()


@pytest.mark.django_db
def test_an_unsubscribed_owner_is_claimed_but_not_emailed():
    site = owned(30)
    EmailSuppression.objects.create(email=site.owner.email)
    assert hosting_nudges_send() == 0
    assert not nudges().exists()
    assert Site.objects.get(pk=site.pk).hosting_nudge_sent_at is not None  # never looked at again


@pytest.mark.django_db
def test_one_owner_with_two_sites_gets_a_nudge_for_each():
    owner = CustomerFactory()
    owned(30, owner=owner)
    owned(30, owner=owner)
    assert hosting_nudges_send() == 2


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_ticks_at_once_nudge_each_site_once():
    sites = [owned(30) for _ in range(12)]
    barrier = threading.Barrier(2)
    results, errors = [], []

    def tick():
        try:
            barrier.wait(timeout=10)
            results.append(hosting_nudges_send())
        except Exception as exc:  # surfaced below; a thread's exception is otherwise lost
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=tick) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    assert sum(results) == len(sites)
    assert nudges().count() == len(sites)
    assert sorted(nudges().values_list("dedupe_key", flat=True)) == sorted(f"hosting_nudge:{site.pk}" for site in sites)


@pytest.mark.django_db
def test_the_beat_schedule_has_both_hosting_tasks(beat_schedule):
    tasks = {task.task: task for task in beat_schedule.filter(task__startswith="checkout.tasks.")}
    nudge, suspend = tasks["checkout.tasks.send_hosting_nudges"], tasks["checkout.tasks.suspend_ended_subscriptions"]
    assert nudge.enabled and (nudge.interval.every, nudge.interval.period) == (1, "hours")
    assert suspend.enabled and (suspend.interval.every, suspend.interval.period) == (15, "minutes")

"""Custom domains (DESIGN §9): claiming, DNS checks through a replaceable resolver, and serving
the live site by Host without trusting arbitrary Host values. No test touches the network."""

import importlib
from datetime import timedelta
from unittest import mock

import dns.exception
import dns.resolver
import pytest
from django.core.exceptions import ValidationError
from django.test import Client
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from customers.tests.factories import CustomerFactory
from sites import dns as site_dns
from sites import services, tasks
from sites.domains import TXT_VALUE_PREFIX, domain_normalise, verified_hosts
from sites.models import DomainVerificationRecord, Site
from sites.tests.factories import SiteFactory, SiteVersionFactory

pytestmark = pytest.mark.django_db

D = DomainVerificationRecord.Status
SITE_HTML = "<!doctype html><html><body><h1>Joe's Pipes live</h1></body></html>"
URL = "/portal/sites/joes-pipes/domains/"

# name -> list of TXT strings, or an exception to raise. Read by fake_txt_records.
PUBLISHED: dict = {}


def fake_txt_records(name: str) -> list[str]:
    answer = PUBLISHED.get(name, [])
    if isinstance(answer, Exception):
        raise answer
    return list(answer)


@pytest.fixture(autouse=True)
def fake_dns(settings):
    """Every lookup goes to PUBLISHED; nothing here may reach a real resolver."""
    settings.SITES_DNS_TXT_RESOLVER = "sites.tests.test_domains.fake_txt_records"
    PUBLISHED.clear()
    with mock.patch("dns.resolver.Resolver.resolve", side_effect=AssertionError("real DNS in a test")):
        yield PUBLISHED
    PUBLISHED.clear()


@pytest.fixture(autouse=True)
def fast_password_hasher(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def owner():
    return CustomerFactory(email="joe@example.com")


@pytest.fixture
def site(owner):
    site = SiteFactory(slug="joes-pipes", business_name="Joe's Pipes", owner=owner, status=Site.Status.ACTIVE)
    SiteVersionFactory(site=site, html=SITE_HTML)
    return site


@pytest.fixture
def owner_client(client, owner):
    client.force_login(owner)
    return client


def record_for(site, domain="www.joespipes.com", status=D.PENDING, **kwargs):
    return DomainVerificationRecord.objects.create(
        site=site, domain=domain, txt_record_name=f"_webmagic-verify.{domain}",
        txt_record_value=f"{TXT_VALUE_PREFIX}secret-{domain}", status=status, **kwargs,
    )


def age(record, **delta):
    DomainVerificationRecord.objects.filter(pk=record.pk).update(created_at=timezone.now() - timedelta(**delta))


# --- What a domain may be ----------------------------------------------------------------------

@pytest.mark.parametrize(("typed", "stored"), [
    ("www.joespipes.com", "www.joespipes.com"),
    ("  WWW.JoesPipes.COM.  ", "www.joespipes.com"),
    ("joes-pipes.co.uk", "joes-pipes.co.uk"),
    ("Bücher.de", "xn--bcher-kva.de"),
    ("a" * 63 + ".com", "a" * 63 + ".com"),
    # Pasted from the browser's address bar: the host is kept, the rest dropped.
    ("https://www.example.com/", "www.example.com"),
    ("  HTTP://Joes.com  ", "joes.com"),
    ("https://www.joespipes.com/about?ref=1#top", "www.joespipes.com"),
    ("joespipes.com/", "joespipes.com"),
])
def test_domains_are_normalised(typed, stored):
    assert domain_normalise(typed) == stored


@pytest.mark.parametrize("typed", [
    "", "   ", "joespipes", "localhost", "shop.localhost", "printer.local", "site.test", "example.invalid",
    "1.2.3.4", "127.0.0.1", "::1", "[::1]", "-joes.com", "joes-.com", "joes..com", ".joes.com", "joes_pipes.com",
    "https://", "ftp://joes.com", "https://joes.com:8080/", "https://joe@joes.com/",
    "joes.com:8080", "joe@joes.com", "joes pipes.com", "joes.123",
    "a" * 64 + ".com", ".".join(["a" * 60] * 5),  # a label over 63, a name over 253
    "testserver", "shop.testserver",  # SITE_URL's host (tests: http://testserver) and its subdomains are ours
])
def test_bad_domains_are_refused(typed):
    with pytest.raises(ValidationError):
        domain_normalise(typed)


# --- Portal: adding and removing -----------------------------------------------------------------

def test_an_active_owner_adds_a_domain_and_sees_the_record_to_publish(owner_client, site):
    response = owner_client.post(URL, {"domain": " WWW.JoesPipes.com "})
    assert response.status_code == 303 and response["Location"] == URL

    [record] = DomainVerificationRecord.objects.all()
    assert record.site == site and record.domain == "www.joespipes.com" and record.status == D.PENDING
    assert record.txt_record_name == "_webmagic-verify.www.joespipes.com"
    assert record.txt_record_value.startswith("webmagic-verify=") and len(record.txt_record_value) >= len("webmagic-verify=") + 32
    body = owner_client.get(URL).content.decode()
    assert record.txt_record_name in body and record.txt_record_value in body
    assert 'class="status-pill status-domain-pending">Pending' in body


def test_a_pasted_address_is_cleaned_to_its_domain(owner_client, site):
    response = owner_client.post(URL, {"domain": "https://www.example.com/"})
    assert response.status_code == 303
    assert DomainVerificationRecord.objects.get().domain == "www.example.com"


def test_each_domain_gets_its_own_unguessable_value(site, owner):
    one = services.domain_claim(site_id=site.pk, user=owner, domain="one.joespipes.com")
    two = services.domain_claim(site_id=site.pk, user=owner, domain="two.joespipes.com")
    assert one.txt_record_value != two.txt_record_value


@pytest.mark.parametrize("typed", ["localhost", "joes.com:8080", "8.8.8.8", "x" * 300, ""])
def test_bad_input_re_renders_the_form_with_an_error(owner_client, site, typed):
    response = owner_client.post(URL, {"domain": typed})
    assert response.status_code == 400
    assert 'class="errorlist"' in response.content.decode()
    assert not DomainVerificationRecord.objects.exists()


def test_a_domain_claimed_by_another_site_is_refused(owner_client, site):
    record_for(SiteFactory(owner=CustomerFactory(), status=Site.Status.ACTIVE), domain="www.joespipes.com")
    response = owner_client.post(URL, {"domain": "www.joespipes.com"})
    assert response.status_code == 400 and "already connected" in response.content.decode()
    assert DomainVerificationRecord.objects.get().site != site


def test_the_unique_constraint_decides_a_race_the_form_did_not_see(site, owner):
    record_for(SiteFactory(owner=CustomerFactory(), status=Site.Status.ACTIVE), domain="www.joespipes.com", status=D.VERIFIED)
    with pytest.raises(services.DomainRefused, match="already connected"):
        services.domain_claim(site_id=site.pk, user=owner, domain="www.joespipes.com")
    assert DomainVerificationRecord.objects.count() == 1


def test_a_failed_claim_does_not_hold_the_name(owner_client, site):
    squatter = record_for(SiteFactory(owner=CustomerFactory(), status=Site.Status.ACTIVE), status=D.FAILED)
    assert owner_client.post(URL, {"domain": "www.joespipes.com"}).status_code == 303
    record = DomainVerificationRecord.objects.get()
    assert record.site == site and record.pk != squatter.pk


@pytest.mark.parametrize("status", [Site.Status.OWNED, Site.Status.SUSPENDED])
def test_only_active_sites_can_add_domains(owner_client, site, status):
    site.status = status
    site.save()
    body = owner_client.get(URL).content.decode()
    assert "Custom domains are for live sites" in body and 'name="domain"' not in body
    response = owner_client.post(URL, {"domain": "www.joespipes.com"})
    assert response.status_code == 400 and "Custom domains are for live sites" in response.content.decode()
    assert not DomainVerificationRecord.objects.exists()


def test_domains_per_site_are_capped(site, owner):
    for n in range(services.DOMAINS_PER_SITE):
        record_for(site, domain=f"d{n}.joespipes.com")
    with pytest.raises(services.DomainRefused, match="up to"):
        services.domain_claim(site_id=site.pk, user=owner, domain="one-more.joespipes.com")


def test_other_customers_cannot_see_add_or_remove_domains(client, site):
    record = record_for(site)
    client.force_login(CustomerFactory())
    assert client.get(URL).status_code == 404
    assert client.post(URL, {"domain": "evil.example.com"}).status_code == 404
    assert client.post(f"{URL}{record.pk}/delete/").status_code == 404
    assert DomainVerificationRecord.objects.filter(pk=record.pk).exists()
    assert DomainVerificationRecord.objects.count() == 1

    anonymous = Client()
    assert anonymous.get(URL).status_code == 302


def test_an_owner_cannot_remove_another_sites_domain_through_their_own_url(owner_client, site):
    others = record_for(SiteFactory(owner=CustomerFactory(), status=Site.Status.ACTIVE))
    assert owner_client.post(f"{URL}{others.pk}/delete/").status_code == 404
    assert DomainVerificationRecord.objects.filter(pk=others.pk).exists()


def test_the_owner_removes_a_verified_domain_and_it_stops_serving_at_once(
    owner_client, site, django_capture_on_commit_callbacks
):
    record = record_for(site, status=D.VERIFIED, verified_at=timezone.now())
    assert Client(HTTP_HOST="www.joespipes.com").get("/").status_code == 200  # now cached

    assert owner_client.get(f"{URL}{record.pk}/delete/").status_code == 405
    with django_capture_on_commit_callbacks(execute=True):
        response = owner_client.post(f"{URL}{record.pk}/delete/")
    assert response.status_code == 303
    assert not DomainVerificationRecord.objects.exists()
    assert Client(HTTP_HOST="www.joespipes.com").get("/").status_code == 400


# --- DNS checks --------------------------------------------------------------------------------

def test_a_published_record_verifies_the_domain(site, fake_dns, django_capture_on_commit_callbacks):
    record = record_for(site)
    assert verified_hosts() == {}  # cached empty
    fake_dns[record.txt_record_name] = ["v=spf1 -all", f"  {record.txt_record_value}  "]

    with django_capture_on_commit_callbacks(execute=True):
        services.domain_check(record_id=record.pk)

    record.refresh_from_db()
    assert record.status == D.VERIFIED and record.verified_at and record.last_checked_at and record.last_error == ""
    assert verified_hosts() == {"www.joespipes.com": "joes-pipes"}  # the cache was dropped


def test_a_missing_record_keeps_the_domain_pending_with_the_reason(site, fake_dns):
    record = record_for(site)
    services.domain_check(record_id=record.pk)
    record.refresh_from_db()
    assert record.status == D.PENDING and record.last_checked_at is not None
    assert record.last_error == "TXT record not found yet."

    fake_dns[record.txt_record_name] = [f"{TXT_VALUE_PREFIX}a-guess"]
    services.domain_check(record_id=record.pk)
    record.refresh_from_db()
    assert record.status == D.PENDING and "doesn't match" in record.last_error


def test_a_domain_pending_too_long_fails(site):
    record = record_for(site)
    age(record, days=services.DOMAIN_PENDING_DAYS, minutes=1)
    services.domain_check(record_id=record.pk)
    record.refresh_from_db()
    assert record.status == D.FAILED and "after 7 days" in record.last_error


def test_a_lookup_that_gets_no_answer_changes_no_status(site, fake_dns):
    record = record_for(site)
    age(record, days=30)
    fake_dns[record.txt_record_name] = site_dns.DnsLookupError("Timeout: 3 seconds")
    services.domain_check(record_id=record.pk)
    record.refresh_from_db()
    assert record.status == D.PENDING and record.last_checked_at is not None
    assert "DNS lookup failed (Timeout" in record.last_error


def test_a_verified_domain_survives_a_short_outage_of_its_record_but_not_a_long_one(site):
    recently = timezone.now() - timedelta(days=2)
    record = record_for(site, status=D.VERIFIED, verified_at=recently)
    services.domain_check(record_id=record.pk)
    record.refresh_from_db()
    assert record.status == D.VERIFIED and record.verified_at == recently and record.last_error

    DomainVerificationRecord.objects.filter(pk=record.pk).update(
        verified_at=timezone.now() - timedelta(days=services.DOMAIN_VERIFIED_GRACE_DAYS, minutes=1)
    )
    services.domain_check(record_id=record.pk)
    record.refresh_from_db()
    assert record.status == D.FAILED


def test_failed_domains_are_not_checked_again(site, fake_dns):
    record = record_for(site, status=D.FAILED)
    fake_dns[record.txt_record_name] = [record.txt_record_value]
    services.domain_check(record_id=record.pk)
    record.refresh_from_db()
    assert record.status == D.FAILED and record.last_checked_at is None


def test_due_checks_are_pending_and_stale_verified_domains_least_recently_checked_first(site):
    now = timezone.now()
    never = record_for(site, domain="never.joespipes.com")
    pending = record_for(site, domain="pending.joespipes.com", last_checked_at=now - timedelta(minutes=5))
    stale = record_for(site, domain="stale.joespipes.com", status=D.VERIFIED, last_checked_at=now - timedelta(days=2))
    record_for(site, domain="fresh.joespipes.com", status=D.VERIFIED, last_checked_at=now - timedelta(hours=1))
    record_for(site, domain="failed.joespipes.com", status=D.FAILED)

    assert services.domains_check_due() == [never.pk, stale.pk, pending.pk]
    assert services.domains_check_due(limit=1) == [never.pk]


def test_the_task_checks_every_due_domain_and_one_crash_does_not_stop_the_rest(site, fake_dns):
    first = record_for(site, domain="a.joespipes.com")
    broken = record_for(site, domain="b.joespipes.com")
    last = record_for(site, domain="c.joespipes.com")
    fake_dns[first.txt_record_name] = [first.txt_record_value]
    fake_dns[broken.txt_record_name] = RuntimeError("resolver bug")
    fake_dns[last.txt_record_name] = [last.txt_record_value]

    summary = tasks.check_domains.delay().get()

    assert summary["checked"] == 3
    statuses = dict(DomainVerificationRecord.objects.values_list("domain", "status"))
    assert statuses == {"a.joespipes.com": D.VERIFIED, "b.joespipes.com": D.PENDING, "c.joespipes.com": D.VERIFIED}
    assert tasks.check_domains.delay().get() == {"checked": 1, "failed": 0}  # idempotent: only b is still due


def test_the_beat_schedule_checks_domains_every_10_minutes_reusing_a_10_minute_schedule():
    from django.apps import apps as django_apps
    from django_celery_beat.models import IntervalSchedule

    migration = importlib.import_module("sites.migrations.0002_domain_check_periodic_task")
    # Run the migration's function: transactional tests elsewhere may have flushed its row.
    PeriodicTask.objects.filter(name=migration.TASK_NAME).delete()
    existing, _ = IntervalSchedule.objects.get_or_create(every=10, period="minutes")
    migration.create_task(django_apps, None)
    migration.create_task(django_apps, None)  # idempotent
    task = PeriodicTask.objects.get(task="sites.tasks.check_domains")
    assert task.enabled and task.interval_id == existing.pk
    assert IntervalSchedule.objects.filter(every=10, period="minutes").count() == 1
    assert PeriodicTask.objects.filter(task="sites.tasks.check_domains").count() == 1


def test_the_real_resolver_joins_txt_strings_and_tells_missing_from_unknown():
    answer = [mock.Mock(strings=[b"webmagic-verify=", b"abc"]), mock.Mock(strings=[b"v=spf1 -all"])]
    name = "_webmagic-verify.joespipes.com"
    with mock.patch("dns.resolver.Resolver.resolve", return_value=answer) as resolve:
        assert site_dns.txt_records(name) == ["webmagic-verify=abc", "v=spf1 -all"]
    assert resolve.call_args.args[:2] == (name, "TXT")
    for missing in (dns.resolver.NXDOMAIN(), dns.resolver.NoAnswer()):
        with mock.patch("dns.resolver.Resolver.resolve", side_effect=missing):
            assert site_dns.txt_records(name) == []
    for unknown in (dns.exception.Timeout(), dns.resolver.NoNameservers()):
        with mock.patch("dns.resolver.Resolver.resolve", side_effect=unknown), pytest.raises(site_dns.DnsLookupError):
            site_dns.txt_records(name)


# --- Serving by Host ---------------------------------------------------------------------------

def host_client(host):
    return Client(HTTP_HOST=host)


def test_a_verified_domain_serves_the_live_site(site):
    record_for(site, status=D.VERIFIED, verified_at=timezone.now())

    page = host_client("WWW.JoesPipes.com:443").get("/")
    assert page.status_code == 200
    body = page.content.decode()
    assert 'src="/sites/joes-pipes/raw/"' in body and "Claim this site" not in body
    assert SITE_HTML not in body  # still framed, never inline
    assert "default-src 'self'" in page["Content-Security-Policy"] and page["X-Frame-Options"] == "DENY"

    for path in ("/sites/joes-pipes/raw/", "/raw/"):
        document = host_client("www.joespipes.com").get(path)
        assert document.status_code == 200 and document.content.decode() == SITE_HTML
        assert document["Content-Security-Policy"].startswith("sandbox ")


def test_nothing_else_of_the_application_answers_on_a_customers_domain(site, owner):
    record_for(site, status=D.VERIFIED, verified_at=timezone.now())
    other = SiteFactory(slug="other-site", status=Site.Status.PREVIEW)
    SiteVersionFactory(site=other, html="<p>other</p>")
    visitor = host_client("www.joespipes.com")
    visitor.force_login(owner)
    for path in ("/portal/", "/admin/", "/sites/other-site/raw/", "/sites/other-site/", "/favicon.ico"):
        response = visitor.get(path)
        assert response.status_code == 404, path
    assert visitor.post("/", {}).status_code == 405


@pytest.mark.parametrize("status", [D.PENDING, D.FAILED])
def test_an_unverified_domain_is_refused_like_any_unknown_host(site, status):
    record_for(site, status=status)
    assert host_client("www.joespipes.com").get("/").status_code == 400
    assert host_client("evil.example.com").get("/").status_code == 400
    assert host_client("evil.example.com").get("/sites/joes-pipes/").status_code == 400


def test_a_verified_domain_of_a_suspended_site_does_not_serve_its_content(site):
    record_for(site, status=D.VERIFIED, verified_at=timezone.now())
    assert host_client("www.joespipes.com").get("/").status_code == 200  # cached while live
    site.status = Site.Status.SUSPENDED
    site.save()

    page = host_client("www.joespipes.com").get("/")
    assert page.status_code == 503 and "temporarily unavailable" in page.content.decode()
    assert 'src="/sites/joes-pipes/raw/"' not in page.content.decode()
    assert host_client("www.joespipes.com").get("/raw/").status_code == 404


def test_our_own_host_is_untouched(site):
    record_for(site, status=D.VERIFIED, verified_at=timezone.now())
    assert Client().get("/sites/joes-pipes/").status_code == 200
    assert Client().get("/portal/login/").status_code == 200


def test_plain_http_on_a_verified_domain_redirects_to_https_on_that_domain(site, settings):
    settings.SECURE_SSL_REDIRECT = True
    record_for(site, status=D.VERIFIED, verified_at=timezone.now())
    response = host_client("www.joespipes.com").get("/?utm=x")
    assert response.status_code == 301 and response["Location"] == "https://www.joespipes.com/?utm=x"
    secure = host_client("www.joespipes.com").get("/", secure=True)
    assert secure.status_code == 200


def test_unknown_hosts_cost_no_query_once_the_verified_set_is_cached(site, django_assert_num_queries):
    record_for(site, status=D.VERIFIED, verified_at=timezone.now())
    host_client("a.example.com").get("/")
    with django_assert_num_queries(0):
        assert host_client("b.example.com").get("/").status_code == 400


def test_a_customers_domain_gets_hsts_without_our_subdomain_and_preload_flags(site, settings):
    settings.SECURE_HSTS_SECONDS = 3600
    settings.SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    settings.SECURE_HSTS_PRELOAD = True
    record_for(site, status=D.VERIFIED, verified_at=timezone.now())
    response = host_client("www.joespipes.com").get("/", secure=True)
    assert response.status_code == 200 and response["Strict-Transport-Security"] == "max-age=3600"
    assert "preload" in Client().get("/sites/joes-pipes/", secure=True)["Strict-Transport-Security"]

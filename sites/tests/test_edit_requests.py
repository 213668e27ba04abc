"""Change requests (DESIGN §9): owners ask from the portal, staff work them in admin, owners are
emailed on each status."""

import pytest
from django.test import Client

from customers.tests.factories import CustomerFactory
from sites import services
from sites.models import EditRequest, Site
from sites.tests.factories import SiteFactory
from webmagic.emails import email_render
from webmagic.models import EmailLog

pytestmark = pytest.mark.django_db

S = EditRequest.Status


@pytest.fixture(autouse=True)
def fast_password_hasher(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def owner():
    return CustomerFactory(email="maria@example.com", full_name="María <López>")


@pytest.fixture
def site(owner):
    return SiteFactory(slug="joes-pipes", business_name="Joe's Pipes", owner=owner, status=Site.Status.ACTIVE)


@pytest.fixture
def owner_client(client, owner):
    client.force_login(owner)
    return client


URL = "/portal/sites/joes-pipes/edits/"


def edit_emails():
    return EmailLog.objects.filter(kind=EmailLog.Kind.EDIT_REQUEST).order_by("created_at", "pk")


def make_request(site, user=None, status=S.PENDING, description="Fix the phone", **kwargs):
    return EditRequest.objects.create(site=site, requested_by=user or site.owner, description=description, status=status, **kwargs)


# --- Portal: asking for a change ---------------------------------------------------------------

def test_the_site_page_links_to_change_requests_and_domains(owner_client, site):
    body = owner_client.get("/portal/sites/joes-pipes/").content.decode()
    assert f'href="{URL}"' in body
    assert 'href="/portal/sites/joes-pipes/domains/"' in body


def test_an_active_owner_sends_a_request_and_gets_an_email(owner_client, owner, site):
    response = owner_client.post(URL, {"description": "  Change the hours to Mon–Fri 8–6.\n  "})

    assert response.status_code == 303 and response["Location"] == URL
    [edit_request] = EditRequest.objects.all()
    assert (edit_request.site, edit_request.requested_by) == (site, owner)
    assert edit_request.description == "Change the hours to Mon–Fri 8–6."  # trimmed
    assert edit_request.status == S.PENDING and edit_request.resolved_at is None
    [log] = edit_emails()
    assert log.to_email == "maria@example.com" and log.user == owner
    assert log.dedupe_key == f"edit_request:{edit_request.pk}:pending"
    assert "We received" in log.subject

    page = owner_client.get(URL).content.decode()
    assert f"Request #{edit_request.pk}" in page and "Change the hours to Mon–Fri 8–6." in page
    assert 'class="status-pill status-pending">Pending' in page


@pytest.mark.parametrize("description", ["", "   \n  ", "x" * 2001])
def test_blank_or_too_long_requests_are_refused(owner_client, site, description):
    response = owner_client.post(URL, {"description": description})
    assert response.status_code == 400
    assert 'class="errorlist"' in response.content.decode()
    assert not EditRequest.objects.exists() and not edit_emails().exists()


def test_a_request_of_exactly_the_limit_is_accepted(owner_client, site):
    assert owner_client.post(URL, {"description": "y" * 2000}).status_code == 303
    assert len(EditRequest.objects.get().description) == 2000


def test_the_owner_text_is_escaped_on_the_page_and_in_the_email(owner_client, site):
    owner_client.post(URL, {"description": '<script>alert("x")</script>'})
    page = owner_client.get(URL).content.decode()
    assert '<script>alert("x")</script>' not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    message = email_render(edit_emails().get())
    html = message.alternatives[0][0] if hasattr(message.alternatives[0], "__getitem__") else message.alternatives[0].content
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "Hi María," in html and "<López>" not in html  # greeted by first name, never as markup
    assert "http://testserver/portal/sites/joes-pipes/edits/" in html and "http://testserver/portal/sites/joes-pipes/edits/" in message.body


@pytest.mark.parametrize("status", [Site.Status.OWNED, Site.Status.SUSPENDED])
def test_only_active_sites_can_ask_for_changes(owner_client, site, status):
    site.status = status
    site.save()

    page = owner_client.get(URL)
    assert page.status_code == 200
    body = page.content.decode()
    assert "Change requests are for live sites" in body and 'name="description"' not in body

    response = owner_client.post(URL, {"description": "Please change the logo"})
    assert response.status_code == 400
    assert "Change requests are for live sites" in response.content.decode()
    assert not EditRequest.objects.exists()


def test_open_requests_per_site_are_capped(owner_client, site):
    for _ in range(services.OPEN_EDIT_REQUESTS_PER_SITE):
        make_request(site)
    make_request(site, status=S.DONE)  # closed ones do not count

    response = owner_client.post(URL, {"description": "One more"})
    assert response.status_code == 400 and "open requests" in response.content.decode()
    assert EditRequest.objects.count() == services.OPEN_EDIT_REQUESTS_PER_SITE + 1


def test_owners_only_see_their_own_requests(owner_client, owner, site):
    mine = make_request(site, description="Mine: new photo")
    previous_owner = CustomerFactory()
    make_request(site, user=previous_owner, description="From the previous owner")
    other_site = SiteFactory(owner=CustomerFactory(), status=Site.Status.ACTIVE)
    make_request(other_site, description="Someone else's request")

    body = owner_client.get(URL).content.decode()
    assert "Mine: new photo" in body and f"Request #{mine.pk}" in body
    assert "From the previous owner" not in body and "Someone else" not in body


def test_other_customers_anonymous_and_unverified_visitors_are_kept_out(client, site):
    stranger = CustomerFactory()
    client.force_login(stranger)
    assert client.get(URL).status_code == 404
    assert client.post(URL, {"description": "Hijack"}).status_code == 404
    assert client.get("/portal/sites/no-such-site/edits/").status_code == 404

    unverified = CustomerFactory(email_verified=False)
    site.owner = unverified
    site.save()
    client.force_login(unverified)
    assert client.post(URL, {"description": "Hello"}).status_code == 403

    anonymous = Client()
    response = anonymous.post(URL, {"description": "Hello"})
    assert response.status_code == 302 and response["Location"].startswith("/portal/login/")
    assert not EditRequest.objects.exists()


def test_the_form_needs_a_csrf_token(owner, site):
    client = Client(enforce_csrf_checks=True)
    client.force_login(owner)
    assert client.post(URL, {"description": "Hello"}).status_code == 403
    assert not EditRequest.objects.exists()


@pytest.mark.parametrize("count", [1, 8])
def test_the_page_runs_a_fixed_number_of_queries(owner_client, site, count, django_assert_num_queries):
    for _ in range(count):
        make_request(site, status=S.DONE, staff_note="Done it")
    owner_client.get(URL)  # warm the session
    # session, user, site with subscriptions (2), requests
    with django_assert_num_queries(5):
        assert owner_client.get(URL).status_code == 200


# --- Staff: the workflow -----------------------------------------------------------------------

def test_the_workflow_moves_forward_and_emails_the_owner_at_each_step(site, owner):
    staff = CustomerFactory(is_staff=True)
    edit_request = services.edit_request_create(site_id=site.pk, user=owner, description="New phone number")

    services.edit_request_transition(edit_request_id=edit_request.pk, status=S.IN_PROGRESS, staff_user=staff)
    edit_request.refresh_from_db()
    assert edit_request.status == S.IN_PROGRESS and edit_request.resolved_at is None

    services.edit_request_transition(edit_request_id=edit_request.pk, status=S.DONE, staff_note="Updated to 555 0100", staff_user=staff)
    edit_request.refresh_from_db()
    assert edit_request.status == S.DONE and edit_request.resolved_at is not None
    assert edit_request.staff_note == "Updated to 555 0100"

    keys = list(edit_emails().values_list("dedupe_key", flat=True))
    assert keys == [f"edit_request:{edit_request.pk}:{status}" for status in ("pending", "in_progress", "done")]
    done_email = email_render(edit_emails().last())
    assert "is done" in done_email.subject and "Updated to 555 0100" in done_email.body


@pytest.mark.parametrize(("start", "target"), [
    (S.PENDING, S.DONE),  # work has to start first
    (S.PENDING, S.PENDING),
    (S.IN_PROGRESS, S.PENDING),
    (S.DONE, S.IN_PROGRESS),
    (S.DONE, S.REJECTED),
    (S.REJECTED, S.DONE),
    (S.PENDING, "archived"),
])
def test_moves_the_table_does_not_allow_are_refused(site, start, target):
    edit_request = make_request(site, status=start)
    with pytest.raises(services.EditRequestTransitionRefused):
        services.edit_request_transition(edit_request_id=edit_request.pk, status=target, staff_note="x", staff_user=None)
    edit_request.refresh_from_db()
    assert edit_request.status == start and not edit_emails().exists()


def test_rejecting_needs_a_note_which_the_owner_then_sees(owner_client, site):
    edit_request = make_request(site)
    with pytest.raises(services.EditRequestTransitionRefused):
        services.edit_request_transition(edit_request_id=edit_request.pk, status=S.REJECTED, staff_note="  ", staff_user=None)

    services.edit_request_transition(
        edit_request_id=edit_request.pk, status=S.REJECTED, staff_note="We can't host videos, sorry.", staff_user=None
    )
    edit_request.refresh_from_db()
    assert edit_request.status == S.REJECTED and edit_request.resolved_at is not None
    body = owner_client.get(URL).content.decode()
    assert "We can&#x27;t host videos, sorry." in body and "status-rejected" in body
    [log] = edit_emails()
    assert log.dedupe_key == f"edit_request:{edit_request.pk}:rejected"
    assert "We can't host videos, sorry." in email_render(log).body


def test_the_note_of_a_request_still_in_progress_is_not_shown_to_the_owner(owner_client, site):
    make_request(site, status=S.IN_PROGRESS, staff_note="internal: ask Bob")
    assert "ask Bob" not in owner_client.get(URL).content.decode()


# --- Staff: admin ------------------------------------------------------------------------------

def admin_url(edit_request):
    return f"/admin/sites/editrequest/{edit_request.pk}/change/"


def test_admin_change_form_moves_the_status_through_the_service(staff_client, site):
    edit_request = make_request(site)
    page = staff_client.get(admin_url(edit_request)).content.decode()
    assert 'value="in_progress"' in page and 'value="done"' not in page  # only allowed moves are offered

    response = staff_client.post(admin_url(edit_request), {"status": "in_progress", "staff_note": ""})
    assert response.status_code == 302
    edit_request.refresh_from_db()
    assert edit_request.status == S.IN_PROGRESS
    assert edit_emails().get().dedupe_key == f"edit_request:{edit_request.pk}:in_progress"


def test_admin_change_form_refuses_a_move_the_workflow_forbids(staff_client, site):
    edit_request = make_request(site)
    response = staff_client.post(admin_url(edit_request), {"status": "done", "staff_note": ""})
    assert response.status_code == 200
    assert "can&#x27;t move to that status" in response.content.decode()
    response = staff_client.post(admin_url(edit_request), {"status": "rejected", "staff_note": ""})
    assert "Say why the request is rejected" in response.content.decode()
    edit_request.refresh_from_db()
    assert edit_request.status == S.PENDING and not edit_emails().exists()


def test_admin_actions_move_what_they_can_and_say_what_they_refused(staff_client, site):
    pending, finished = make_request(site), make_request(site, status=S.DONE)
    response = staff_client.post(
        "/admin/sites/editrequest/",
        {"action": "mark_in_progress", "_selected_action": [pending.pk, finished.pk]},
        follow=True,
    )
    body = response.content.decode()
    assert "1 request(s) marked in progress" in body
    assert f"Edit request #{finished.pk} is done" in body
    pending.refresh_from_db()
    finished.refresh_from_db()
    assert (pending.status, finished.status) == (S.IN_PROGRESS, S.DONE)


def test_admin_cannot_add_requests_and_the_list_filters_by_status(staff_client, site):
    make_request(site, description="Pending one")
    make_request(site, status=S.DONE, description="Done one")
    assert staff_client.get("/admin/sites/editrequest/add/").status_code == 403
    body = staff_client.get("/admin/sites/editrequest/?status__exact=done").content.decode()
    assert "1 edit request" in body

"""Money and dedupe records are never deleted from admin, by anyone, superusers included: not one
by one, not with "delete selected", and not as the cascade of deleting a site or an account."""

import pytest
from django.apps import apps
from django.utils import timezone

from checkout.models import CheckoutSession, Payment, ReconcileRun, Refund, Subscription
from checkout.tests.factories import CheckoutSessionFactory, PaymentFactory, SubscriptionFactory
from customers.models import CustomerUser
from customers.tests.factories import CustomerFactory
from sites.models import Site
from sites.tests.factories import SiteFactory, SiteVersionFactory
from webhooks.models import WebhookEvent, WebhookRejection
from webmagic.models import EmailLog, EmailSuppression, StaffAlert

pytestmark = pytest.mark.django_db


def a_row(model):
    now = timezone.now()
    makers = {
        Payment: lambda: PaymentFactory(),
        Refund: lambda: Refund.objects.create(recurrente_refund_id="re_3jfrywsf", payment=PaymentFactory(),
                                              source=Refund.Source.STAFF_REQUEST, status=Refund.Status.SUCCEEDED),
        CheckoutSession: lambda: CheckoutSessionFactory(),
        Subscription: lambda: SubscriptionFactory(),
        WebhookEvent: lambda: WebhookEvent.objects.create(delivery_id="msg_1", event_type="intent.succeeded",
                                                          raw_body="{}", payload={}),
        EmailLog: lambda: EmailLog.objects.create(kind=EmailLog.Kind.RECEIPT, to_email="maria.lopez@example.com",
                                                  dedupe_key="receipt:pa_1"),
        ReconcileRun: lambda: ReconcileRun.objects.create(started_at=now),
        WebhookRejection: lambda: WebhookRejection.objects.create(bucket=now, reason="bad_signature", count=1,
                                                                  last_rejected_at=now),
        StaffAlert: lambda: StaffAlert.objects.create(kind="webhook_failures", sequence=1, subject="s", body="b", fired_at=now),
    }
    return makers[model]()


def admin_url(obj, view="change"):
    opts = obj._meta
    return f"/admin/{opts.app_label}/{opts.model_name}/{obj.pk}/{view}/"


def changelist(model):
    return f"/admin/{model._meta.app_label}/{model._meta.model_name}/"


NEVER_DELETED = [Payment, Refund, CheckoutSession, Subscription, WebhookEvent, EmailLog, ReconcileRun, WebhookRejection,
                 StaffAlert]


@pytest.mark.parametrize("model", NEVER_DELETED, ids=lambda m: m.__name__)
def test_a_superuser_is_offered_no_delete_and_cannot_force_one(staff_client, model):
    row = a_row(model)
    page = staff_client.get(admin_url(row))
    assert page.status_code == 200 and "/delete/" not in page.content.decode()  # no "Delete" link
    listing = staff_client.get(changelist(model))
    assert listing.status_code == 200 and 'value="delete_selected"' not in listing.content.decode()

    assert staff_client.get(admin_url(row, "delete")).status_code == 403
    assert staff_client.post(admin_url(row, "delete"), {"post": "yes"}).status_code == 403
    # The bulk action, posted by hand, is not an action of this list any more.
    staff_client.post(changelist(model), {"action": "delete_selected", "_selected_action": [str(row.pk)], "post": "yes"})
    assert model.objects.filter(pk=row.pk).exists()


def money_on(site: Site, customer: CustomerUser) -> dict:
    session = CheckoutSessionFactory(site=site, user=customer, status=CheckoutSession.Status.COMPLETED)
    return {
        "session": session,
        "subscription": SubscriptionFactory(site=site, user=customer, checkout_session=session),
        "payment": PaymentFactory(site=site, user=customer, checkout_session=session),
    }


def still_there(money: dict, customer: CustomerUser) -> None:
    for row in money.values():
        row.refresh_from_db()
        assert row.user_id == customer.pk  # not deleted, and not cut loose from who paid either
    assert money["payment"].checkout_session_id == money["session"].pk


def test_deleting_a_site_with_payments_is_refused_with_a_clear_message(staff_client):
    customer = CustomerFactory()
    site = SiteFactory(status=Site.Status.PREVIEW)
    SiteVersionFactory(site=site)
    money = money_on(site, customer)

    page = staff_client.get(admin_url(site, "delete"))
    assert page.status_code == 200
    body = page.content.decode()
    assert "would require deleting the following protected related objects" in body
    assert money["payment"].recurrente_payment_id in body and "is never deleted" in body
    response = staff_client.post(admin_url(site, "delete"), {"post": "yes"})
    assert response.status_code == 200  # the same refusal page, not a redirect to "deleted", never a 500
    response = staff_client.post(
        changelist(Site), {"action": "delete_selected", "_selected_action": [str(site.pk)], "post": "yes"}
    )
    assert response.status_code == 200 and "protected related objects" in response.content.decode()
    assert Site.objects.filter(pk=site.pk).exists() and site.versions.count() == 1
    still_there(money, customer)


def test_deleting_a_customer_who_paid_is_refused_and_keeps_the_links(staff_client):
    customer = CustomerFactory()
    # A buyer who no longer owns the site (refunded, ownership transferred): only money links them.
    money = money_on(SiteFactory(), customer)

    page = staff_client.get(admin_url(customer, "delete"))
    body = page.content.decode()
    assert page.status_code == 200 and "protected related objects" in body and "untick \u201cActive\u201d instead" in body
    assert staff_client.post(admin_url(customer, "delete"), {"post": "yes"}).status_code == 200
    response = staff_client.post(
        changelist(CustomerUser), {"action": "delete_selected", "_selected_action": [str(customer.pk)], "post": "yes"}
    )
    assert response.status_code == 200 and "protected related objects" in response.content.decode()
    assert CustomerUser.objects.filter(pk=customer.pk).exists()
    still_there(money, customer)


def test_deleting_the_staff_member_who_asked_for_a_refund_is_refused(staff_client, django_user_model):
    clerk = django_user_model.objects.create_user("clerk@webmagic.test", "a long enough password 1", is_staff=True)
    refund = Refund.objects.create(recurrente_refund_id="re_3jfrywsf", payment=PaymentFactory(), requested_by=clerk,
                                   source=Refund.Source.STAFF_REQUEST)
    assert staff_client.post(admin_url(clerk, "delete"), {"post": "yes"}).status_code == 200
    refund.refresh_from_db()
    assert refund.requested_by_id == clerk.pk


def test_a_site_and_a_customer_without_money_can_still_be_deleted(staff_client):
    # The refusals above are about money, not a blanket ban: a preview nobody paid for can go.
    customer, site = CustomerFactory(), SiteFactory()
    SiteVersionFactory(site=site)
    assert staff_client.post(admin_url(site, "delete"), {"post": "yes"}).status_code == 302
    assert staff_client.post(admin_url(customer, "delete"), {"post": "yes"}).status_code == 302
    assert not Site.objects.filter(pk=site.pk).exists() and not CustomerUser.objects.filter(pk=customer.pk).exists()


def test_links_between_money_records_are_protected_outside_admin_too():
    """Every foreign key from a money record to an account or another money record is PROTECT: a
    delete from the shell or a script cannot quietly cut them either."""
    from django.db.models import PROTECT

    money_models = {apps.get_model("checkout", name) for name in ("Payment", "Refund", "CheckoutSession", "Subscription")}
    links = [f for m in money_models for f in m._meta.get_fields() if f.many_to_one and f.concrete]
    assert {f"{f.model.__name__}.{f.name}" for f in links if f.remote_field.on_delete is not PROTECT} == set()
    assert len(links) >= 12  # site, user and each other on all four


def test_a_customers_own_unsubscribe_cannot_be_deleted_but_a_staff_entry_can(staff_client):
    theirs = EmailSuppression.objects.create(email="maria.lopez@example.com", source=EmailSuppression.Source.ONE_CLICK)
    ours = EmailSuppression.objects.create(email="typo@example.com", source=EmailSuppression.Source.STAFF)
    assert staff_client.post(admin_url(theirs, "delete"), {"post": "yes"}).status_code == 403
    response = staff_client.post(
        changelist(EmailSuppression), {"action": "delete_selected", "_selected_action": [str(theirs.pk)], "post": "yes"}
    )
    assert response.status_code == 403
    staff_client.post(admin_url(theirs), {"email": "someone.else@example.com", "source": "staff"})
    theirs.refresh_from_db()
    assert theirs.email == "maria.lopez@example.com" and theirs.source == EmailSuppression.Source.ONE_CLICK
    assert staff_client.post(admin_url(ours, "delete"), {"post": "yes"}).status_code == 302
    assert list(EmailSuppression.objects.values_list("email", flat=True)) == ["maria.lopez@example.com"]


"""Admin actions that change money or state need the change permission, not just view."""

import pytest
from django.contrib.auth.models import Permission

from checkout.models import Payment
from checkout.tests.factories import PaymentFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def viewer_client(client, django_user_model):
    viewer = django_user_model.objects.create_user("viewer@webmagic.test", "a long enough password 1", is_staff=True)
    viewer.user_permissions.add(*Permission.objects.filter(codename__in=["view_payment", "view_webhookevent", "view_subscription"]))
    client.force_login(viewer)
    return client


def test_view_only_staff_are_not_offered_the_refund_action_and_cannot_post_it(viewer_client, monkeypatch):
    from checkout.services import refunds

    called = []
    monkeypatch.setattr(refunds, "payment_refund_request", lambda **kwargs: called.append(kwargs))
    payment = PaymentFactory()
    page = viewer_client.get("/admin/checkout/payment/")
    assert page.status_code == 200 and 'value="refund"' not in page.content.decode()
    viewer_client.post("/admin/checkout/payment/", {"action": "refund", "_selected_action": [payment.pk]})
    assert called == []
    assert Payment.objects.get(pk=payment.pk).status == Payment.Status.SUCCEEDED


def test_view_only_staff_cannot_reprocess_webhooks(viewer_client):
    body = viewer_client.get("/admin/webhooks/webhookevent/").content.decode()
    assert 'value="reprocess' not in body


def test_staff_with_change_permission_see_the_refund_action(staff_client):
    PaymentFactory()
    assert 'value="refund"' in staff_client.get("/admin/checkout/payment/").content.decode()

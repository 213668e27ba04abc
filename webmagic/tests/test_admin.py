"""Email log and customers admin: read-only log, tracking columns, constant query counts."""

import pytest

from customers.tests.factories import CustomerFactory
from webmagic.models import EmailLog
from webmagic.tests.admin_queries import assert_constant_queries

pytestmark = pytest.mark.django_db

LOG = "/admin/webmagic/emaillog/"


def logs(n):
    for i in range(n):
        EmailLog.objects.create(kind=EmailLog.Kind.RECOVERY_REMINDER, to_email=f"p{i}@example.com", status=EmailLog.Status.OPENED,
                                user=CustomerFactory(password=None))


def test_email_log_is_read_only_and_filterable(staff_client):
    log = EmailLog.objects.create(kind=EmailLog.Kind.RECEIPT, to_email="maria@example.com", status=EmailLog.Status.BOUNCED)
    EmailLog.objects.create(kind=EmailLog.Kind.WELCOME, to_email="juan@example.com", status=EmailLog.Status.SENT)
    page = staff_client.get(f"{LOG}{log.pk}/change/")
    assert page.status_code == 200 and 'name="to_email"' not in page.content.decode()
    assert staff_client.post(f"{LOG}{log.pk}/change/", {"to_email": "x@example.com"}).status_code == 403
    assert staff_client.get(f"{LOG}{log.pk}/delete/").status_code == 403
    assert staff_client.get(f"{LOG}add/").status_code == 403
    filtered = staff_client.get(LOG + "?kind__exact=receipt&status__exact=bounced").content.decode()
    assert "maria@example.com" in filtered and "juan@example.com" not in filtered
    assert "juan@example.com" in staff_client.get(LOG + "?q=juan").content.decode()


def test_email_log_changelist_runs_a_fixed_number_of_queries(staff_client):
    assert_constant_queries(staff_client, LOG, logs)


def test_customers_changelist_runs_a_fixed_number_of_queries(staff_client):
    assert_constant_queries(staff_client, "/admin/customers/customeruser/",
                            lambda n: [CustomerFactory(password=None) for _ in range(n)])

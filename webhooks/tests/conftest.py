import pytest

from checkout.tests.factories import CheckoutSessionFactory
from sites.tests.factories import SiteFactory


@pytest.fixture
def purchase_session(db):
    """An open $495 purchase checkout for a preview site, as the purchase form leaves it."""
    site = SiteFactory(business_name="LA Plumbing Pros", slug="la-plumbing-pros")
    return CheckoutSessionFactory(site=site, customer_name="María López", customer_email="maria.lopez@example.com")




@pytest.fixture
def retries_run_inline(monkeypatch):
    """Eager Celery re-runs a task's retries at once (no countdown) when failures are not
    propagated, which is how a worker behaves minus the waiting."""
    from webmagic.celery import app

    monkeypatch.setitem(app.conf, "task_eager_propagates", False)

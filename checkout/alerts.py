"""Staff alert rule owned by the checkout app, registered from `CheckoutConfig.ready()`."""

from datetime import datetime, timedelta

from django.conf import settings

from webmagic.alerts import Alert

from .selectors import funnel_metrics

# A business with a few checkouts a day: a week with 5 or more attempts and not one paid is the
# signal (a rate over 24 hours would be noise at this volume).
CONVERSION_WINDOW = timedelta(days=7)
CONVERSION_MIN_STARTED = 5


def alert_low_conversion(*, now: datetime) -> Alert | None:
    """No purchase paid out of 5 or more attempts started in the last 7 days (as counted on the
    funnel page). Attempts younger than the abandonment delay are left out: their buyers may still
    be paying."""
    end = now - timedelta(minutes=settings.ABANDONED_CART_DELAY_MINUTES)
    metrics = funnel_metrics(start=end - CONVERSION_WINDOW, end=end)
    started, paid = metrics["started"], metrics["completed"]
    if started < CONVERSION_MIN_STARTED or paid > 0:
        return None
    return Alert(
        kind="low_conversion",
        subject=f"No purchase paid out of {started} attempts in the last 7 days",
        body=(
            f"0 of {started} purchase attempts started in the 7 days to {end:%Y-%m-%d %H:%M} UTC were paid (alert at "
            f"{CONVERSION_MIN_STARTED} or more with none paid). {metrics['checkouts_created']} reached Recurrente's "
            "checkout.\nCheck the funnel page and the checkout sessions' errors in admin (a Recurrente outage shows as "
            "sessions stuck in `initiated` with a checkout error; checkouts created but never paid can mean missed "
            "webhooks: see Webhook events)."
        ),
    )

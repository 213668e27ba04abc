"""Run every staff alert rule now and deliver directly (no Celery): safe to run from cron while the
queue is down, which is exactly when the periodic `check_alerts` task cannot run."""

from django.core.management.base import BaseCommand

from webmagic.alerts import AlertResult, alerts_check


def result_line(result: AlertResult) -> str:
    if result.error:
        return f"{result.rule}: ERROR {result.error} (the rule is broken; see the log)"
    if result.alert is None:  # not fired
        return f"{result.rule}: ok"
    outcome = "delivered" if result.delivered else "suppressed (already alerted within the hour)"
    return f"{result.rule}: FIRED {result.alert.kind}, {outcome}: {result.alert.subject}"


class Command(BaseCommand):
    help = "Run every staff alert rule now and deliver what fires directly (email + ALERT_WEBHOOK_URL), bypassing Celery."

    def handle(self, *args, **options):
        results = alerts_check(direct=True)
        for result in results:
            self.stdout.write(result_line(result))
        fired = [r for r in results if r.fired]
        self.stdout.write(
            f"{len(results)} rules: {len(fired)} fired, {sum(r.delivered for r in fired)} delivered, "
            f"{sum(r.suppressed for r in fired)} suppressed, {sum(bool(r.error) for r in results)} broken"
        )

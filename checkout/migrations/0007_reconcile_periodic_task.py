"""The reconciler's schedule (every 5 minutes, a row staff can change in admin), and the rows it
needs for what already exists: open checkouts become due now, and refunds requested before the
Refund table existed get a row so they are polled until final."""

from django.db import migrations
from django.utils import timezone

from webmagic.beat import periodic_task_ensure, periodic_tasks_remove

RECONCILE_NAME = "Recurrente: reconcile open checkouts, live subscriptions and pending refunds"
RECONCILE_TASK = "checkout.tasks.reconcile_recurrente"


def forwards(apps, schema_editor):
    periodic_task_ensure(
        apps, name=RECONCILE_NAME, task=RECONCILE_TASK, every=(5, "minutes"),
        # A tick that waited in the queue longer than its period is covered by the next one.
        expire_seconds=5 * 60,
        description="Asks Recurrente about every checkout that could still be paid (with back-off), live "
        "subscriptions daily and pending refunds, and applies what webhooks missed. Test keys may send no "
        "webhooks at all: this is then how purchases complete.",
    )
    now = timezone.now()
    CheckoutSession = apps.get_model("checkout", "CheckoutSession")
    CheckoutSession.objects.filter(
        status__in=["checkout_created", "abandoned"], recurrente_checkout_id__isnull=False, next_reconcile_at__isnull=True,
    ).update(next_reconcile_at=now)
    Payment = apps.get_model("checkout", "Payment")
    Refund = apps.get_model("checkout", "Refund")
    for payment in Payment.objects.exclude(recurrente_refund_id="").filter(status__in=["refund_pending", "refunded"]):
        refunded = payment.status == "refunded"
        Refund.objects.get_or_create(
            recurrente_refund_id=payment.recurrente_refund_id,
            defaults={
                "payment": payment, "source": "staff_request", "status": "succeeded" if refunded else "pending",
                "finalized_at": payment.refunded_at if refunded else None, "next_check_at": None if refunded else now,
                "currency": payment.currency,
            },
        )


def backwards(apps, schema_editor):
    periodic_tasks_remove(apps, RECONCILE_NAME)


class Migration(migrations.Migration):
    dependencies = [
        ("checkout", "0006_reconcile_and_refunds"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(forwards, backwards)]

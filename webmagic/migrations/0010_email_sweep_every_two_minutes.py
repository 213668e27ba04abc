"""The email sweep also re-drives sends whose worker died (`sending`, unlocked). Those must be
retried while the provider still remembers the idempotency key (Brevo: 15 minutes), so the sweep
runs every 2 minutes instead of 10. A schedule staff changed in admin is left as they set it."""

from django.db import migrations

from webmagic.beat import periodic_task_ensure

TASK_NAME = "Re-send stuck queued emails"
TASK_PATH = "webmagic.tasks.resend_stuck_emails"
DESCRIPTION = "Enqueues again emails left queued (never picked up) or left sending by a worker that died."


def _interval(apps, every: int):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    return (
        IntervalSchedule.objects.filter(every=every, period="minutes").order_by("pk").first()
        or IntervalSchedule.objects.create(every=every, period="minutes")
    )


def every_two_minutes(apps, schema_editor):
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    periodic_task_ensure(apps, name=TASK_NAME, task=TASK_PATH, every=(2, "minutes"), description=DESCRIPTION)
    PeriodicTask.objects.filter(name=TASK_NAME, interval__every=10, interval__period="minutes").update(
        interval=_interval(apps, 2), description=DESCRIPTION,
    )


def every_ten_minutes(apps, schema_editor):
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTask.objects.filter(name=TASK_NAME, interval__every=2, interval__period="minutes").update(interval=_interval(apps, 10))


class Migration(migrations.Migration):
    dependencies = [
        ("webmagic", "0009_emaillog_refund_kind"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(every_two_minutes, every_ten_minutes)]

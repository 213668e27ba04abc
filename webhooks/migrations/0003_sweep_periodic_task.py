"""Create the beat schedule for the webhook sweep as a row staff can see and change in admin."""

from django.db import migrations

TASK_NAME = "Re-drive unprocessed webhooks"
TASK_PATH = "webhooks.tasks.sweep_unprocessed_webhooks"


def create_sweep(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    # Shared with other beat tasks; never create a second identical schedule.
    every_5_minutes = IntervalSchedule.objects.filter(every=5, period="minutes").first()
    if every_5_minutes is None:
        every_5_minutes = IntervalSchedule.objects.create(every=5, period="minutes")
    PeriodicTask.objects.get_or_create(
        name=TASK_NAME,
        defaults={
            "task": TASK_PATH,
            "interval": every_5_minutes,
            "enabled": True,
            "description": "Processes webhook events left received/processing or failed and due for a retry.",
        },
    )


def delete_sweep(apps, schema_editor):
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTask.objects.filter(name=TASK_NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("webhooks", "0002_next_retry_at"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create_sweep, delete_sweep)]

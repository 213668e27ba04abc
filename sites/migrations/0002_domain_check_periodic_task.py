"""Beat schedule for custom domain checks (DESIGN §9), as an admin-editable row."""

from django.db import migrations

TASK_NAME = "Custom domains: check TXT records"
TASK_PATH = "sites.tasks.check_domains"


def create_task(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    # Reuse a 10-minute schedule if one exists (IntervalSchedule is not unique, so no get_or_create).
    every_10_minutes = IntervalSchedule.objects.filter(every=10, period="minutes").order_by("pk").first()
    if every_10_minutes is None:
        every_10_minutes = IntervalSchedule.objects.create(every=10, period="minutes")
    PeriodicTask.objects.get_or_create(
        name=TASK_NAME,
        defaults={
            "task": TASK_PATH, "interval": every_10_minutes, "enabled": True,
            # A tick waiting in the queue longer than its period is covered by the next one.
            "expire_seconds": 10 * 60,
            "description": "Looks up the TXT record owners publish for their custom domain: pending domains every tick "
            "(failed after 7 days without it), verified ones daily.",
        },
    )


def delete_task(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=TASK_NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("sites", "0001_initial"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create_task, delete_task)]

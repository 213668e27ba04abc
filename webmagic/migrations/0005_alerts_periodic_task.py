"""Beat schedule for the staff alerts (DESIGN §8), as an admin-editable row."""

from django.db import migrations

TASK_NAME = "Staff alerts"
TASK_PATH = "webmagic.tasks.check_alerts"


def create_task(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    # Reuse the 5-minute schedule other tasks may already have (IntervalSchedule is not unique).
    every_5_minutes = IntervalSchedule.objects.filter(every=5, period="minutes").order_by("pk").first()
    if every_5_minutes is None:
        every_5_minutes = IntervalSchedule.objects.create(every=5, period="minutes")
    PeriodicTask.objects.get_or_create(
        name=TASK_NAME,
        defaults={"task": TASK_PATH, "interval": every_5_minutes, "enabled": True,
                  "description": "Mails ADMINS when webhooks fail, conversion drops, recovery emails fail or the "
                                 "queue backs up; each kind at most once an hour."},
    )


def delete_task(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=TASK_NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("webmagic", "0004_email_sweep_periodic_task"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create_task, delete_task)]

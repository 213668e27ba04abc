"""Beat schedule for re-driving emails left queued (a lost broker message), as an admin-editable row."""

from django.db import migrations

TASK_NAME = "Re-send stuck queued emails"
TASK_PATH = "webmagic.tasks.resend_stuck_emails"


def create_task(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    every_10_minutes = IntervalSchedule.objects.filter(every=10, period="minutes").first()
    if every_10_minutes is None:
        every_10_minutes = IntervalSchedule.objects.create(every=10, period="minutes")
    PeriodicTask.objects.get_or_create(
        name=TASK_NAME,
        defaults={"task": TASK_PATH, "interval": every_10_minutes, "enabled": True,
                  "description": "Enqueues again emails that stayed queued (never picked up by a worker)."},
    )


def delete_task(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=TASK_NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("webmagic", "0003_emailsuppression"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create_task, delete_task)]

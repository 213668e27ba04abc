"""Beat schedule for the staff alerts (DESIGN §8), as an admin-editable row."""

from django.db import migrations

from webmagic.beat import periodic_task_ensure, periodic_tasks_remove

TASK_NAME = "Staff alerts"
TASK_PATH = "webmagic.tasks.check_alerts"


def create_task(apps, schema_editor):
    periodic_task_ensure(
        apps, name=TASK_NAME, task=TASK_PATH, every=(5, "minutes"),
        description="Mails ADMINS when webhooks fail, conversion drops, recovery emails fail or the queue backs up; "
        "each kind at most once an hour.",
    )


def delete_task(apps, schema_editor):
    periodic_tasks_remove(apps, TASK_NAME)


class Migration(migrations.Migration):
    dependencies = [
        ("webmagic", "0004_email_sweep_periodic_task"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create_task, delete_task)]

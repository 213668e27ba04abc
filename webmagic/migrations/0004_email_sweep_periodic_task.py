"""Beat schedule for re-driving emails left queued (a lost broker message), as an admin-editable row."""

from django.db import migrations

from webmagic.beat import periodic_task_ensure, periodic_tasks_remove

TASK_NAME = "Re-send stuck queued emails"
TASK_PATH = "webmagic.tasks.resend_stuck_emails"


def create_task(apps, schema_editor):
    periodic_task_ensure(
        apps, name=TASK_NAME, task=TASK_PATH, every=(10, "minutes"),
        description="Enqueues again emails that stayed queued (never picked up by a worker).",
    )


def delete_task(apps, schema_editor):
    periodic_tasks_remove(apps, TASK_NAME)


class Migration(migrations.Migration):
    dependencies = [
        ("webmagic", "0003_emailsuppression"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create_task, delete_task)]

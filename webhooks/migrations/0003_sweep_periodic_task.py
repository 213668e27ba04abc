"""Create the beat schedule for the webhook sweep as a row staff can see and change in admin."""

from django.db import migrations

from webmagic.beat import periodic_task_ensure, periodic_tasks_remove

TASK_NAME = "Re-drive unprocessed webhooks"
TASK_PATH = "webhooks.tasks.sweep_unprocessed_webhooks"


def create_sweep(apps, schema_editor):
    periodic_task_ensure(
        apps, name=TASK_NAME, task=TASK_PATH, every=(5, "minutes"),
        description="Processes webhook events left received/processing or failed and due for a retry.",
    )


def delete_sweep(apps, schema_editor):
    periodic_tasks_remove(apps, TASK_NAME)


class Migration(migrations.Migration):
    dependencies = [
        ("webhooks", "0002_next_retry_at"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create_sweep, delete_sweep)]

"""Create the daily beat schedule that prunes old rejection counts, as a row staff can see and
change in admin."""

from django.db import migrations

from webmagic.beat import periodic_task_ensure, periodic_tasks_remove

TASK_NAME = "Prune webhook rejection counts"
TASK_PATH = "webhooks.tasks.prune_webhook_rejections"


def create_prune(apps, schema_editor):
    periodic_task_ensure(
        apps, name=TASK_NAME, task=TASK_PATH, crontab={"minute": "40", "hour": "3"},
        description="Deletes per-minute counts of refused webhook deliveries older than 30 days.",
    )


def delete_prune(apps, schema_editor):
    periodic_tasks_remove(apps, TASK_NAME)


class Migration(migrations.Migration):
    dependencies = [
        ("webhooks", "0004_webhook_rejection"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create_prune, delete_prune)]

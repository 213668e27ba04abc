"""Beat schedule for custom domain checks (DESIGN §9), as an admin-editable row."""

from django.db import migrations

from webmagic.beat import periodic_task_ensure, periodic_tasks_remove

TASK_NAME = "Custom domains: check TXT records"
TASK_PATH = "sites.tasks.check_domains"


def create_task(apps, schema_editor):
    periodic_task_ensure(
        apps, name=TASK_NAME, task=TASK_PATH, every=(10, "minutes"),
        # A tick waiting in the queue longer than its period is covered by the next one.
        expire_seconds=10 * 60,
        description="Looks up the TXT record owners publish for their custom domain: pending domains every tick "
        "(failed after 7 days without it), verified ones daily.",
    )


def delete_task(apps, schema_editor):
    periodic_tasks_remove(apps, TASK_NAME)


class Migration(migrations.Migration):
    dependencies = [
        ("sites", "0001_initial"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create_task, delete_task)]

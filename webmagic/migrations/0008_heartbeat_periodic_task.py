"""Beat schedule for the worker heartbeat (DESIGN §8), as an admin-editable row.

The heartbeat replaces the queue-length alert: it works on every broker, and a stale one is
noticed from outside the queue (healthz, `manage.py check_alerts`)."""

from django.db import migrations

from webmagic.beat import periodic_task_ensure, periodic_tasks_remove

TASK_NAME = "Worker heartbeat"
TASK_PATH = "webmagic.tasks.heartbeat"
# A heartbeat that waited in the queue longer than its own interval proves nothing about now;
# expiring it means a backlog (not only a dead worker) lets the heartbeat go stale.
EXPIRE_SECONDS = 60

ALERTS_TASK_NAME = "Staff alerts"
ALERTS_OLD_DESCRIPTION = (
    "Mails ADMINS when webhooks fail, conversion drops, recovery emails fail or the queue backs up; "
    "each kind at most once an hour."
)
ALERTS_DESCRIPTION = (
    "Alerts ADMINS (and ALERT_WEBHOOK_URL) when webhooks fail, transactional or recovery emails fail, "
    "nothing sells or the worker heartbeat is stale; each kind at most once an hour."
)


def create_task(apps, schema_editor):
    periodic_task_ensure(
        apps, name=TASK_NAME, task=TASK_PATH, every=(1, "minutes"), expire_seconds=EXPIRE_SECONDS,
        description="Stamps the worker heartbeat (Heartbeat 'worker'); /healthz/ and the alerts report it when "
        "older than 10 minutes.",
    )
    # The queue-length rule is gone; fix the alerts row's description unless staff rewrote it.
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTask.objects.filter(name=ALERTS_TASK_NAME, description=ALERTS_OLD_DESCRIPTION).update(description=ALERTS_DESCRIPTION)


def delete_task(apps, schema_editor):
    periodic_tasks_remove(apps, TASK_NAME)
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTask.objects.filter(name=ALERTS_TASK_NAME, description=ALERTS_DESCRIPTION).update(description=ALERTS_OLD_DESCRIPTION)


class Migration(migrations.Migration):
    dependencies = [
        ("webmagic", "0007_heartbeat_staffalert"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create_task, delete_task)]

"""Create the hosting schedule (DESIGN §6) as rows staff can see and change in admin: suspend
sites whose cancelled subscription's paid period is over, and nudge owners who bought a site a
day ago but never started hosting."""

from django.db import migrations

from webmagic.beat import periodic_task_ensure, periodic_tasks_remove

SUSPEND_NAME = "Hosting: suspend sites whose cancelled subscription has ended"
SUSPEND_TASK = "checkout.tasks.suspend_ended_subscriptions"
NUDGE_NAME = "Hosting: nudge owners who have not activated hosting"
NUDGE_TASK = "checkout.tasks.send_hosting_nudges"


def create_schedule(apps, schema_editor):
    periodic_task_ensure(
        apps, name=SUSPEND_NAME, task=SUSPEND_TASK, every=(15, "minutes"),
        # A tick waiting in the queue longer than its period is covered by the next one.
        expire_seconds=15 * 60,
        description="A site whose hosting was cancelled stays live until the paid period ends; this suspends it then "
        "and emails the owner, once.",
    )
    periodic_task_ensure(
        apps, name=NUDGE_NAME, task=NUDGE_TASK, every=(1, "hours"), expire_seconds=60 * 60,
        description="One email to owners who bought their site 24 hours ago and have not started hosting.",
    )


def delete_schedule(apps, schema_editor):
    periodic_tasks_remove(apps, SUSPEND_NAME, NUDGE_NAME)


class Migration(migrations.Migration):
    dependencies = [
        ("checkout", "0004_recovery_periodic_tasks"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create_schedule, delete_schedule)]

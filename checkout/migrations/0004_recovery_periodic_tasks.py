"""Create the abandoned-checkout recovery schedule (DESIGN §7) as rows staff can see and change
in admin; the beat process reads them through django_celery_beat's DatabaseScheduler."""

from django.db import migrations

from webmagic.beat import periodic_task_ensure, periodic_tasks_remove

SCAN_NAME = "Abandoned checkouts: send recovery reminders"
SCAN_TASK = "checkout.tasks.check_abandoned_carts"
CLEANUP_NAME = "Abandoned checkouts: expire old sessions and strip personal data"
CLEANUP_TASK = "checkout.tasks.cleanup_old_abandoned_carts"


def create_schedule(apps, schema_editor):
    periodic_task_ensure(
        apps, name=SCAN_NAME, task=SCAN_TASK, every=(5, "minutes"),
        # A tick that waits in the queue longer than its own period is pointless: the next one covers it.
        expire_seconds=5 * 60,
        description="Claims checkouts left unpaid for 15 minutes and sends one recovery reminder per person and site.",
    )
    periodic_task_ensure(
        apps, name=CLEANUP_NAME, task=CLEANUP_TASK, crontab={"minute": "0", "hour": "3"},
        description="Marks sessions past the recovery window expired; removes IP and user agent after 90 days.",
    )


def delete_schedule(apps, schema_editor):
    periodic_tasks_remove(apps, SCAN_NAME, CLEANUP_NAME)


class Migration(migrations.Migration):
    dependencies = [
        ("checkout", "0003_sandboxcheckout"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create_schedule, delete_schedule)]

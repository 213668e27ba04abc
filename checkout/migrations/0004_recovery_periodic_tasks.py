"""Create the abandoned-checkout recovery schedule (DESIGN §7) as rows staff can see and change
in admin; the beat process reads them through django_celery_beat's DatabaseScheduler."""

from django.db import migrations

SCAN_NAME = "Abandoned checkouts: send recovery reminders"
SCAN_TASK = "checkout.tasks.check_abandoned_carts"
CLEANUP_NAME = "Abandoned checkouts: expire old sessions and strip personal data"
CLEANUP_TASK = "checkout.tasks.cleanup_old_abandoned_carts"


def create_schedule(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    CrontabSchedule = apps.get_model("django_celery_beat", "CrontabSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    every_5_minutes, _ = IntervalSchedule.objects.get_or_create(every=5, period="minutes")
    daily_at_3, _ = CrontabSchedule.objects.get_or_create(
        minute="0", hour="3", day_of_week="*", day_of_month="*", month_of_year="*", timezone="UTC"
    )
    # get_or_create on the name: re-running (or staff having edited the row) never duplicates it.
    PeriodicTask.objects.get_or_create(
        name=SCAN_NAME,
        defaults={
            "task": SCAN_TASK, "interval": every_5_minutes, "enabled": True,
            # A tick that waits in the queue longer than its own period is pointless: the next one covers it.
            "expire_seconds": 5 * 60,
            "description": "Claims checkouts left unpaid for 15 minutes and sends one recovery reminder per person and site.",
        },
    )
    PeriodicTask.objects.get_or_create(
        name=CLEANUP_NAME,
        defaults={
            "task": CLEANUP_TASK, "crontab": daily_at_3, "enabled": True,
            "description": "Marks sessions past the recovery window expired; removes IP and user agent after 90 days.",
        },
    )


def delete_schedule(apps, schema_editor):
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTask.objects.filter(name__in=[SCAN_NAME, CLEANUP_NAME]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("checkout", "0003_sandboxcheckout"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create_schedule, delete_schedule)]

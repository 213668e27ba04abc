"""Create the hosting schedule (DESIGN §6) as rows staff can see and change in admin: suspend
sites whose cancelled subscription's paid period is over, and nudge owners who bought a site a
day ago but never started hosting."""

from django.db import migrations

SUSPEND_NAME = "Hosting: suspend sites whose cancelled subscription has ended"
SUSPEND_TASK = "checkout.tasks.suspend_ended_subscriptions"
NUDGE_NAME = "Hosting: nudge owners who have not activated hosting"
NUDGE_TASK = "checkout.tasks.send_hosting_nudges"


def create_schedule(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    # get_or_create: reuse the schedule rows other tasks already point at.
    every_15_minutes, _ = IntervalSchedule.objects.get_or_create(every=15, period="minutes")
    hourly, _ = IntervalSchedule.objects.get_or_create(every=1, period="hours")
    PeriodicTask.objects.get_or_create(
        name=SUSPEND_NAME,
        defaults={
            "task": SUSPEND_TASK, "interval": every_15_minutes, "enabled": True,
            # A tick waiting in the queue longer than its period is covered by the next one.
            "expire_seconds": 15 * 60,
            "description": "A site whose hosting was cancelled stays live until the paid period ends; this suspends it then "
            "and emails the owner, once.",
        },
    )
    PeriodicTask.objects.get_or_create(
        name=NUDGE_NAME,
        defaults={
            "task": NUDGE_TASK, "interval": hourly, "enabled": True, "expire_seconds": 60 * 60,
            "description": "One email to owners who bought their site 24 hours ago and have not started hosting.",
        },
    )


def delete_schedule(apps, schema_editor):
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTask.objects.filter(name__in=[SUSPEND_NAME, NUDGE_NAME]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("checkout", "0004_recovery_periodic_tasks"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create_schedule, delete_schedule)]

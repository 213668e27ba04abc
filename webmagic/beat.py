"""Beat schedule rows (django-celery-beat) as data migrations create them: one way for all.

Schedules are shared rows and IntervalSchedule is not unique, so an existing one is reused rather
than fetched with get_or_create (which fails once two equal rows exist); tasks are keyed by name,
so re-running a migration, or staff having edited the row in admin, never duplicates them.
"""


def periodic_task_ensure(
    apps, *, name: str, task: str, description: str, every: tuple[int, str] | None = None, crontab: dict | None = None,
    expire_seconds: int | None = None,
):
    """Create the named periodic task unless it exists. `every` = (5, "minutes"); `crontab` =
    {"minute": "0", "hour": "3"} (other fields "*", UTC)."""
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    schedule = {}
    if every is not None:
        IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
        count, period = every
        schedule["interval"] = (
            IntervalSchedule.objects.filter(every=count, period=period).order_by("pk").first()
            or IntervalSchedule.objects.create(every=count, period=period)
        )
    if crontab is not None:
        CrontabSchedule = apps.get_model("django_celery_beat", "CrontabSchedule")
        fields = {"minute": "*", "hour": "*", "day_of_week": "*", "day_of_month": "*", "month_of_year": "*",
                  "timezone": "UTC", **crontab}
        schedule["crontab"] = CrontabSchedule.objects.filter(**fields).order_by("pk").first() or CrontabSchedule.objects.create(**fields)
    PeriodicTask.objects.get_or_create(
        name=name,
        defaults={"task": task, "enabled": True, "description": description, "expire_seconds": expire_seconds, **schedule},
    )


def periodic_tasks_remove(apps, *names: str) -> None:
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name__in=names).delete()

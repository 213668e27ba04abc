"""The Celery app. Reliability defaults (late acks, reject on worker loss, time limits) live in
settings under the CELERY_ namespace."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webmagic.settings")

app = Celery("webmagic")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

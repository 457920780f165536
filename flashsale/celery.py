"""The Celery application; tasks are discovered in each app's tasks.py."""

import os

from celery import Celery

from flashsale.checkout.worker import RecoveryWatch

# What a deploy runs gets the production settings unless it opts out (`make run` sets the local ones).
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "flashsale.settings.production")

app = Celery("flashsale")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
app.steps["worker"].add(RecoveryWatch)

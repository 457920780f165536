"""The Celery application; tasks are discovered in each app's tasks.py."""

import os

from celery import Celery
from celery.signals import beat_init

from flashsale.broker_watch import BrokerWatch
from flashsale.checkout.worker import RecoveryWatch, beat_recovery_start

# What a deploy runs gets the production settings unless it opts out (`make run` sets the local ones).
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "flashsale.settings.production")

app = Celery("flashsale")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
app.steps["worker"].add(RecoveryWatch)
app.steps["worker"].add(BrokerWatch)
beat_init.connect(beat_recovery_start, weak=False)

"""Celery beat alone (no worker running: the ticker ended with the broker and is not back yet) rebuilds a drop
within a fraction of a second of Redis coming back empty. Real beat process, real Redis killed."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flashsale.redis import redis_client
from inventory import services as inventory_services
from inventory.redis_keys import inventory_keys
from tests.factories import DropFactory
from waitingroom import services as queue_services

from .test_worker_killed import database_url, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


def test_beat_alone_rebuilds_a_lost_drop_within_a_second(tmp_path, private_redis, redis_prefix, settings):
    drop = DropFactory(quantity=25)
    inventory_services.drop_arm(drop=drop)
    queue_services.queue_start(drop=drop)
    stock = inventory_keys(drop.pk).stock
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "flashsale.settings.test", "DATABASE_URL": database_url(),
           "TEST_REDIS_URL": private_redis.url, "TEST_CACHE_URL": private_redis.url,
           "FLASHSALE_TEST_PREFIX": redis_prefix}  # fmt: skip
    log = tmp_path / "beat.log"
    with open(log, "wb") as out:
        beat = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "flashsale", "beat", "--loglevel", "INFO", "--schedule",
             str(tmp_path / "schedule")],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        assert wait_until(lambda: "drop recovery watch: started" in log.read_text(), 60), log.read_text()[-3000:]
        private_redis.restart_empty()
        back = time.monotonic()
        client = redis_client()
        while not client.exists(stock) and time.monotonic() - back < 10:
            time.sleep(0.02)
        rebuilt_after = time.monotonic() - back
        assert client.exists(stock), log.read_text()[-3000:]
        # No worker consumes the beat's tasks here: the rebuild is the watch in beat itself
        assert rebuilt_after < 1.0, (rebuilt_after, log.read_text()[-3000:])
        assert int(client.get(stock)) == 25
        assert "queue rebuilt from the database" in log.read_text()
    finally:
        os.killpg(beat.pid, signal.SIGTERM)
        beat.wait(timeout=20)

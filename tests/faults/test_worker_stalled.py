"""A Celery worker that stopped consuming (alive, connected, reading nothing: seen after Redis was lost
mid-sale) shuts itself down, and its supervisor (scripts/respawn.sh, as `make run` starts it) starts a fresh
one that takes the waiting work. Real worker process, real broker, real supervisor."""

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from celery import Celery

from flashsale.broker_watch import waiting_messages

from .conftest import PrivateRedis

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
STALL_SECONDS = 2
PREFIX = f"stall{os.getpid()}"


def wait_until(predicate, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


@pytest.fixture
def supervised_worker(tmp_path):
    broker = PrivateRedis()
    broker.start()
    log = tmp_path / "worker.log"
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "flashsale.settings.test", "TEST_REDIS_URL": broker.url,
           "TEST_CACHE_URL": broker.url, "FLASHSALE_TEST_PREFIX": PREFIX,
           "BROKER_STALL_SECONDS": str(STALL_SECONDS)}  # fmt: skip
    name = f"stall-{os.getpid()}"
    command = ["scripts/respawn.sh", sys.executable, "-m", "celery", "-A", "flashsale", "worker", "--loglevel",
               "WARNING", "--concurrency", "1", "-Q", "celery", "-n", f"{name}@%h", "--without-gossip",
               "--without-mingle", "--without-heartbeat"]  # fmt: skip
    with open(log, "wb") as out:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)  # fmt: skip
    client = Celery("stall-test", broker=broker.url)
    client.conf.broker_transport_options = {"global_keyprefix": f"{PREFIX}:celery:"}
    try:
        yield client, f"{name}@{os.uname().nodename}", log
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=20)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        broker.kill()


def waiting(client) -> int:
    return waiting_messages(client, ["celery"]).get("celery", 0)


def test_a_worker_that_stopped_consuming_is_restarted_and_the_work_goes_on(supervised_worker):
    client, name, log = supervised_worker
    assert wait_until(lambda: client.control.ping(destination=[name], timeout=0.5), 60), log.read_text()[-3000:]

    # It consumes; and idle with nothing waiting for several stall periods, it is left alone
    client.send_task("celery.accumulate", args=(1,), queue="celery")
    assert wait_until(lambda: waiting(client) == 0, 10), log.read_text()[-3000:]
    time.sleep(3 * STALL_SECONDS)
    assert "broker watch" not in log.read_text()
    assert "respawn:" not in log.read_text()

    # It stops consuming (as after the broker was lost) while alive and connected: work piles up
    client.control.cancel_consumer("celery", destination=[name], reply=True, timeout=5)
    client.send_task("celery.accumulate", args=(2,), queue="celery")
    time.sleep(1)
    assert waiting(client) == 1

    # The watch notices, the worker shuts down, the supervisor starts a fresh one, which takes the task
    assert wait_until(lambda: waiting(client) == 0, STALL_SECONDS + 60), log.read_text()[-3000:]
    text = log.read_text()
    assert "broker watch: 1 waiting in celery" in text, text[-3000:]
    assert "respawn: " in text, text[-3000:]
    assert "starting it again" in text, text[-3000:]
    assert "Traceback" not in text, text[-3000:]

"""A Celery worker that stopped consuming (alive, "connected", reading nothing: seen after Redis was lost
mid-sale) shuts itself down, and its supervisor (scripts/respawn.sh, as `make run` starts it) starts a fresh
one that takes the waiting work. Real worker process, real broker behind a TCP proxy that leaves the worker's
connections half-dead, real supervisor."""

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
from .test_worker_killed import wait_until

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from stack import TcpProxy

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
STALL_SECONDS = 2
PREFIX = f"stall{os.getpid()}"


@pytest.fixture
def supervised_worker(tmp_path):
    broker = PrivateRedis()
    broker.start()
    proxy = TcpProxy(broker.port)
    proxy.up()
    url = f"redis://127.0.0.1:{proxy.port}/0"
    log = tmp_path / "worker.log"
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "flashsale.settings.test", "TEST_REDIS_URL": url,
           "TEST_CACHE_URL": url, "FLASHSALE_TEST_PREFIX": PREFIX,
           "BROKER_STALL_SECONDS": str(STALL_SECONDS)}  # fmt: skip
    name = f"stall-{os.getpid()}"
    command = ["scripts/respawn.sh", sys.executable, "-m", "celery", "-A", "flashsale", "worker", "--loglevel",
               "WARNING", "--concurrency", "1", "-Q", "celery", "-n", f"{name}@%h", "--without-gossip",
               "--without-mingle", "--without-heartbeat"]  # fmt: skip
    with open(log, "wb") as out:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)  # fmt: skip
    client = Celery("stall-test", broker=broker.url)  # straight to Redis, not through the proxy
    client.conf.broker_transport_options = {"global_keyprefix": f"{PREFIX}:celery:"}
    try:
        yield client, proxy, f"{name}@{os.uname().nodename}", log
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=20)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        proxy.down()
        broker.kill()


def waiting(client) -> int:
    return waiting_messages(client, ["celery"]).get("celery", 0)


def test_a_worker_that_stopped_consuming_is_restarted_and_the_work_goes_on(supervised_worker):
    client, proxy, name, log = supervised_worker
    assert wait_until(lambda: client.control.ping(destination=[name], timeout=0.5), 60), log.read_text()[-3000:]

    # It consumes; and idle with nothing waiting for several stall periods, it is left alone
    client.send_task("celery.accumulate", args=(1,), queue="celery")
    assert wait_until(lambda: waiting(client) == 0, 10), log.read_text()[-3000:]
    time.sleep(3 * STALL_SECONDS)
    assert "broker watch" not in log.read_text()
    assert "respawn:" not in log.read_text()

    # Its connections to the broker go half-dead: open, silent. It reads nothing more; work piles up
    proxy.freeze()
    time.sleep(1.5)  # the worker's BRPOP in flight (1 s) times out at Redis: its answer is lost in the silence
    client.send_task("celery.accumulate", args=(2,), queue="celery")
    time.sleep(1)
    assert waiting(client) == 1

    # The watch (on a connection of its own) notices, the worker shuts down (warm, then cold, then an exit:
    # its own connections cannot even close cleanly), the supervisor starts a fresh one, which takes the task
    assert wait_until(lambda: waiting(client) == 0, STALL_SECONDS + 90), log.read_text()[-3000:]
    text = log.read_text()
    assert "broker watch: 1 waiting in celery" in text, text[-3000:]
    assert "respawn: " in text, text[-3000:]
    assert "starting it again" in text, text[-3000:]


def test_a_queue_an_operator_stopped_consuming_is_not_taken_for_a_stall(supervised_worker):
    client, _, name, log = supervised_worker
    assert wait_until(lambda: client.control.ping(destination=[name], timeout=0.5), 60), log.read_text()[-3000:]

    client.control.cancel_consumer("celery", destination=[name], reply=True, timeout=5)
    client.send_task("celery.accumulate", args=(1,), queue="celery")
    time.sleep(4 * STALL_SECONDS)
    assert waiting(client) == 1  # nobody took it: the operator's choice stands
    assert "broker watch" not in log.read_text()
    assert "respawn:" not in log.read_text()

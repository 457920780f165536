"""Failover mid-sale on the multi-node topology `make cluster-run` starts (a Redis Cluster of 3 primaries with a
replica each, two web nodes behind HAProxy, two Celery workers, beat, localstripe, PostgreSQL): a web node, a
worker, or the Redis primary holding the drop's slot is killed while shoppers buy, driven over HTTP by
``simulate_drop`` through the load balancer. Run by ``make test-cluster`` (CI), not by ``make test``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
import cluster_run  # noqa: E402
import redis_cluster  # noqa: E402

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not os.environ.get("TEST_REDIS_CLUSTER"), reason="make test-cluster runs the failover tests"),
]
CLUSTER_BASE_PORT = 7100  # a cluster of its own: its primary is killed
UNITS, SHOPPERS = 30, 300


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Topology:
    env: dict
    url: str
    log: Path
    webs: list[int]

    def manage(self, *args: str, timeout: float = 300) -> str:
        done = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=self.env, capture_output=True,
                              text=True, timeout=timeout)  # fmt: skip
        assert done.returncode in (0, 1), done.stderr[-3000:]  # simulate_drop exits 1 on a 5xx
        assert done.returncode == 0 or "{" in done.stdout, done.stderr[-3000:]
        return done.stdout


def _pg_database(name: str) -> str | None:
    if not shutil.which("createdb"):
        return None
    done = subprocess.run(["createdb", "-h", "127.0.0.1", "-U", "postgres", name], capture_output=True)
    return f"postgres://postgres@127.0.0.1:5432/{name}" if done.returncode == 0 else None


@pytest.fixture(scope="module")
def topology(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cluster-run")
    name = f"flashsale_failover_{os.getpid()}"
    webs = [free_port(), free_port()]
    env = {key: value for key, value in os.environ.items() if not key.startswith(("DJANGO_", "TEST_", "PYTEST"))}
    env.update(
        DJANGO_SETTINGS_MODULE="flashsale.settings.base", PORT=str(free_port()), WEB_BASE_PORT=str(webs[0]),
        CLUSTER_BASE_PORT=str(CLUSTER_BASE_PORT), LOCALSTRIPE_PORT=str(free_port()),
        REDIS_URL="redis://127.0.0.1:6379/4", FLASHSALE_REDIS_PREFIX=f"fo{os.getpid()}", RATELIMIT_ENABLE="0",
        POW_COST="50", STRIPE_RATE_LIMIT="1000", DJANGO_DEBUG="0",
        DATABASE_URL=_pg_database(name) or f"sqlite:///{folder / 'failover.sqlite3'}",
    )  # fmt: skip
    webs = [webs[0], webs[0] + 1]
    with cluster_run.running(env, folder) as manage_env:
        yield Topology(env=manage_env, url=f"http://127.0.0.1:{env['PORT']}", log=folder / "cluster-run.log",
                       webs=webs)  # fmt: skip
    if env["DATABASE_URL"].startswith("postgres"):
        subprocess.run(["dropdb", "-h", "127.0.0.1", "-U", "postgres", "--if-exists", "--force", name], check=False)


def pids(pattern: str) -> list[int]:
    """The Python processes (not their supervising shell) whose command line contains ``pattern``."""
    found = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True).stdout.split()
    return [int(pid) for pid in found if Path(f"/proc/{pid}/exe").resolve().name.startswith("python")]


def serving_port(node: int, slot: int) -> int | None:
    """The port of the healthy primary that serves ``slot``, as ``node`` sees the cluster."""
    for line in redis_cluster.cli(node, "cluster", "nodes").splitlines():
        fields = line.split()
        if len(fields) < 9 or "master" not in fields[2] or "fail" in fields[2]:
            continue
        for span in fields[8:]:
            low, _, high = span.partition("-")
            if low.isdigit() and int(low) <= slot <= int(high or low):
                return int(fields[1].split("@")[0].rsplit(":", 1)[1])
    return None


def sale(topo: Topology, slug: str, fault, *, after: float = 2.0, rate: int = 10) -> dict:
    """Run simulate_drop through the load balancer; ``fault()`` strikes ``after`` seconds once the drop is on
    sale (its API answers). Its JSON report."""

    def strike():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{topo.url}/api/drops/{slug}", timeout=2) as response:  # noqa: S310
                    if json.loads(response.read())["state"] == "live":
                        break
            except (OSError, ValueError, KeyError):
                pass
            time.sleep(0.2)
        time.sleep(after)
        fault()

    striker = threading.Thread(target=strike, daemon=True)
    striker.start()
    out = topo.manage("simulate_drop", "--url", topo.url, "--shoppers", str(SHOPPERS), "--units", str(UNITS),
                      "--rate", str(rate), "--timeout", "240", "--settle", "60", "--slug", slug, "--prefix", slug,
                      "--concurrency", "40", "--json", "--no-progress")  # fmt: skip
    striker.join(timeout=60)  # the fault's own measurements finish
    return json.loads(out[out.index("{") :])


def assert_sold_once(report: dict) -> None:
    assert report["oversold"] == 0
    assert report["units_accounted"]["paid"] == UNITS, report["units_accounted"]
    assert report["orders_paid"] == UNITS  # no purchase lost or doubled: one paid order per unit
    assert report["database_and_redis_agree"], json.dumps(report["units_accounted"])
    assert report["unfinished_shoppers"] == 0, report["outcomes"]


def test_a_web_node_killed_mid_sale_the_other_serves_everyone(topology):
    killed = []

    def kill_web1():
        for pid in pids(f"uvicorn.*--port {topology.webs[0]}"):
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    report = sale(topology, "web-killed", kill_web1)

    assert killed, "no web node was killed"
    assert_sold_once(report)
    # The load balancer took the dead node out (and back once its supervisor restarted it)
    log = topology.log.read_text()
    assert "web/web1 is DOWN" in log
    assert log.rindex("web/web1 is UP") > log.index("web/web1 is DOWN")
    # Only requests that were in flight on the killed node can have failed
    assert sum(report["server_errors"].values()) <= 10, report["server_errors"]


def test_a_worker_killed_mid_sale_admission_goes_on_through_the_other(topology):
    killed = []

    def kill_worker1():
        for pid in pids("celery -A flashsale worker.*--hostname worker1@"):
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    report = sale(topology, "worker-killed", kill_worker1)

    assert killed
    assert_sold_once(report)
    assert report["server_errors_5xx"] == 0, report["server_errors"]


def test_the_primary_of_the_drops_slot_killed_mid_sale_its_replica_takes_over(topology):
    from redis.cluster import RedisCluster, key_slot

    client = RedisCluster(host="127.0.0.1", port=CLUSTER_BASE_PORT)
    struck = {}

    def kill_primary():
        drop_id = topology.manage("shell", "-c", "from inventory.models import Drop; "
                                  "print(Drop.objects.get(slug='primary-killed').pk)").strip()  # fmt: skip
        slot = key_slot(f"{{drop:{drop_id}}}".encode())
        primary = client.nodes_manager.get_node_from_slot(slot)
        struck["port"] = primary.port
        struck["at"] = time.monotonic()
        subprocess.run(["redis-cli", "-p", str(primary.port), "shutdown", "nosave"], capture_output=True)
        survivor = next(p for p in range(CLUSTER_BASE_PORT, CLUSTER_BASE_PORT + 6) if p != primary.port)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and serving_port(survivor, slot) in (None, primary.port):
            time.sleep(0.05)
        struck["failover_seconds"] = time.monotonic() - struck["at"]
        struck["new_primary"] = serving_port(survivor, slot)

    # Admitting 3 a second, the 30 units sell for ten seconds or more: the primary dies mid-sale
    report = sale(topology, "primary-killed", kill_primary, rate=3)

    assert "failover_seconds" in struck, struck
    assert report["time_to_sell_out_seconds"] is None or report["time_to_sell_out_seconds"] > 2, report
    # Nothing oversold even for writes the replica never received (the database's guard), every unit sold
    # once, the stores agree after the rebuild, every shopper who paid has the order
    assert_sold_once(report)
    # The replica took over within seconds (cluster-node-timeout 2 s, then the election)
    assert struck["new_primary"] not in (None, struck["port"]), struck
    assert struck["failover_seconds"] < 15, struck
    print(f"\nprimary {struck['port']} killed; {struck['new_primary']} serves the slot after "
          f"{struck['failover_seconds']:.1f} s; sold out in {report['time_to_sell_out_seconds']} s, "
          f"{report['seconds']['shoppers']} s for every shopper, 5xx {report['server_errors']}")  # fmt: skip
    client.close()


def test_a_second_beat_admits_nobody_twice(topology, tmp_path):
    # Given a second Celery beat started by mistake beside the topology's own, sending every tick again
    second = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "flashsale", "beat", "--loglevel", "WARNING", "--schedule",
         str(tmp_path / "second-beat")],
        cwd=ROOT, env=topology.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        # When a drop admitting 3 shoppers a second sells out
        report = sale(topology, "two-beats", lambda: None, rate=3)
    finally:
        os.killpg(second.pid, signal.SIGKILL)
        second.wait(timeout=10)

    # Then every unit is sold once, and admission kept the drop's rate: twice the ticks, not twice the shoppers
    assert_sold_once(report)
    rate = report["admission_rate"]
    assert rate["while_moving"] is not None, rate
    assert rate["while_moving"] <= 3 * 1.25, rate

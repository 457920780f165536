"""`make cluster-run`: the multi-node topology on one machine, processes standing for machines.

- a Redis Cluster for the sale's keys: 3 primaries with a replica each (ports CLUSTER_BASE_PORT .. +5,
  default 7000; scripts/redis_cluster.py);
- a single Redis for what cannot live on a cluster (the cache and sessions, pub/sub, Celery's broker):
  REDIS_URL, started when none answers;
- PostgreSQL (DATABASE_URL; by default the local server's database ``flashsale_cluster``, created when
  missing; SQLite in var/ when no PostgreSQL answers);
- two web nodes (uvicorn, one process each, ports WEB_BASE_PORT and +1) behind HAProxy on PORT: HTTP and
  websockets, health checks on /healthz, TRUSTED_PROXY_COUNT=1;
- two Celery workers (each serves every queue, so either may die), one beat, localstripe.

It prints each address and the environment ``manage.py`` needs against it, then runs everything in the
foreground (honcho) until Ctrl-C.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VAR = Path(os.environ.get("CLUSTER_RUN_DIR", ROOT / "var" / "cluster-run")).resolve()
PY = sys.executable
sys.path.insert(0, str(ROOT / "scripts"))

import redis_cluster  # noqa: E402
import redis_up  # noqa: E402


def answers(host: str, port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex((host, port)) == 0


def database_url() -> str:
    if os.environ.get("DATABASE_URL"):
        return os.environ["DATABASE_URL"]
    if answers("127.0.0.1", 5432) and shutil.which("psql"):
        exists = subprocess.run(
            ["psql", "-h", "127.0.0.1", "-U", "postgres", "-tAc",
             "SELECT 1 FROM pg_database WHERE datname = 'flashsale_cluster'"],
            capture_output=True, text=True,
        ).stdout.strip()  # fmt: skip
        if exists != "1":
            subprocess.run(["createdb", "-h", "127.0.0.1", "-U", "postgres", "flashsale_cluster"], check=True)
        return "postgres://postgres@127.0.0.1:5432/flashsale_cluster"
    return f"sqlite:///{VAR / 'flashsale.sqlite3'}"


def haproxy() -> str:
    found = shutil.which("haproxy")
    if found:
        return found
    if shutil.which("apt-get"):
        print("cluster-run: installing HAProxy (apt-get install haproxy)", flush=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "haproxy"], check=True, stdout=subprocess.DEVNULL)
        found = shutil.which("haproxy")
    if not found:
        sys.exit("cluster-run: HAProxy is needed (apt-get install haproxy)")
    return found


HAPROXY_CFG = """\
global
    maxconn 8000   # two file descriptors each: within a default open-files limit of 20,000
defaults
    mode http
    option http-server-close
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    timeout http-request 10s   # slow headers are cut off here, not in the web nodes
    timeout tunnel 1h          # websockets, once upgraded
    timeout client-fin 5s
    timeout check 5s           # a node busy with a herd answers /healthz late; it is not down
frontend shop
    bind 127.0.0.1:{port}
    option forwardfor
    http-request set-header X-Forwarded-Proto http
    default_backend web
backend web
    balance roundrobin
    retries 2
    option redispatch 1   # a connection refused (a node just killed) is tried on the other node
    option httpchk GET /healthz
    http-check expect status 200
    default-server inter 1s fall 3 rise 2
{servers}
"""


def supervised(command: str) -> str:
    """``command`` under ``scripts/respawn.sh``: a killed web node or worker comes back by itself a second later,
    as a machine's supervisor (systemd) would bring it back."""
    return f"{ROOT / 'scripts' / 'respawn.sh'} {command}"


def manage_env(env: dict) -> dict:
    """What ``manage.py`` needs against a topology started with ``env``: the cluster for the sale's keys."""
    base = env.get("CLUSTER_BASE_PORT", "7000")
    plain = env.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    nodes = ",".join(f"127.0.0.1:{int(base) + n}" for n in range(redis_cluster.NODES))
    return {**env, "REDIS_CLUSTER": "1", "REDIS_URL": f"redis://127.0.0.1:{base}/0", "REDIS_CLUSTER_NODES": nodes,
            "CACHE_URL": plain}  # fmt: skip


@contextlib.contextmanager
def running(env: dict, folder: Path, *, seconds: float = 180) -> Iterator[dict]:
    """Run the topology in the background (for tests and benches) with ``env`` and its files in ``folder``;
    yield ``manage_env(env)`` once /healthz answers through the load balancer; stop it all afterwards."""
    log_path = folder / "cluster-run.log"
    with log_path.open("w") as log:
        process = subprocess.Popen([PY, str(Path(__file__).resolve())], cwd=ROOT,
                                   env={**env, "CLUSTER_RUN_DIR": str(folder)}, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    try:
        deadline = time.monotonic() + seconds
        while not _healthy(f"http://127.0.0.1:{env.get('PORT', '8000')}/healthz"):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"cluster-run did not come up:\n{log_path.read_text()[-4000:]}")
            time.sleep(0.5)
        yield manage_env(env)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
        redis_cluster.down(int(env.get("CLUSTER_BASE_PORT", "7000")), folder / "redis-cluster")


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - our own http URL
            return response.status == 200
    except OSError:
        return False


def main() -> int:
    port = int(os.environ.get("PORT", "8000"))
    base = int(os.environ.get("CLUSTER_BASE_PORT", "7000"))
    web_base = int(os.environ.get("WEB_BASE_PORT", "8101"))
    stripe_port = int(os.environ.get("LOCALSTRIPE_PORT", "8420"))
    plain = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    VAR.mkdir(parents=True, exist_ok=True)

    cluster_url = redis_cluster.up(base, VAR / "redis-cluster")
    host, plain_port = plain.split("://", 1)[1].split("/", 1)[0].split(":")
    plain_server = None if redis_up.reachable(host, int(plain_port)) else redis_up.start(host, int(plain_port))
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": os.environ.get("DJANGO_SETTINGS_MODULE", "flashsale.settings.base"),
        "REDIS_CLUSTER": "1",
        "REDIS_URL": cluster_url,
        # every node as a seed: a process (re)started while the first node is down still finds the cluster
        "REDIS_CLUSTER_NODES": ",".join(f"127.0.0.1:{base + n}" for n in range(redis_cluster.NODES)),
        "CACHE_URL": plain,
        "DATABASE_URL": database_url(),
        "TRUSTED_PROXY_COUNT": "1",
        "LOCALSTRIPE_PORT": str(stripe_port),
        "PROMETHEUS_MULTIPROC_DIR": str(VAR / "prometheus"),
    }
    shutil.rmtree(VAR / "prometheus", ignore_errors=True)
    (VAR / "prometheus").mkdir()
    for command in (["migrate", "--noinput"], ["collectstatic", "--noinput", "--verbosity", "0"], ["seed_demo"]):
        subprocess.run([PY, "manage.py", *command], cwd=ROOT, env=env, check=True)

    webs = [web_base, web_base + 1]
    servers = "\n".join(f"    server web{n + 1} 127.0.0.1:{p} check" for n, p in enumerate(webs))
    (VAR / "haproxy.cfg").write_text(HAPROXY_CFG.format(port=port, servers=servers))
    venv = Path(PY).parent
    uvicorn = (f"{venv}/uvicorn flashsale.asgi:application --host 127.0.0.1 --workers 1 --no-access-log "
               "--ws-per-message-deflate false --proxy-headers --forwarded-allow-ips 127.0.0.1")  # fmt: skip
    celery = f"{venv}/celery -A flashsale"
    worker = (
        f"{celery} worker --loglevel WARNING --concurrency 2 -Q celery,ticks,holds --hostname worker{{n}}@%h "
        "--without-gossip --without-mingle --without-heartbeat"
    )
    beat = f"{celery} beat --loglevel WARNING --schedule {VAR / 'celerybeat-schedule'}"
    procfile = "\n".join([
        *(f"web{n + 1}: {supervised(f'{uvicorn} --port {p}')}" for n, p in enumerate(webs)),
        *(f"worker{n}: {supervised(worker.format(n=n))}" for n in (1, 2)),
        f"beat: {supervised(beat)}",
        f"stripe: {PY} scripts/localstripe_server.py --port {stripe_port}",
        f"lb: {haproxy()} -db -f {VAR / 'haproxy.cfg'}",
    ]) + "\n"  # fmt: skip
    (VAR / "Procfile").write_text(procfile)

    shown = (
        "DJANGO_SETTINGS_MODULE",
        "REDIS_CLUSTER",
        "REDIS_URL",
        "REDIS_CLUSTER_NODES",
        "CACHE_URL",
        "DATABASE_URL",
        "LOCALSTRIPE_PORT",
    )
    print(f"""
cluster-run: the shop at http://127.0.0.1:{port}/ (HAProxy), admin at http://127.0.0.1:{port}/admin/
  web nodes   {", ".join(f"http://127.0.0.1:{p}" for p in webs)}
  Redis Cluster (sale's keys) 127.0.0.1:{base}-{base + 5}; single Redis (cache, pub/sub, broker) {plain}
  database    {env["DATABASE_URL"]}
  localstripe http://127.0.0.1:{stripe_port}
manage.py against it:
  {" ".join(f"{name}={env[name]}" for name in shown)} .venv/bin/python manage.py drop_status demo
""", flush=True)  # fmt: skip
    honcho = subprocess.Popen([f"{venv}/honcho", "-f", str(VAR / "Procfile"), "-d", str(ROOT), "start"], env=env)
    # A TERM (a supervisor, `timeout`) stops everything as Ctrl-C does, leaving no process behind.
    signal.signal(signal.SIGTERM, lambda *_: honcho.send_signal(signal.SIGINT))
    try:
        return honcho.wait()
    except KeyboardInterrupt:  # the same Ctrl-C reached honcho too: let it stop its processes
        return honcho.wait()
    finally:
        if plain_server is not None:
            plain_server.terminate()


if __name__ == "__main__":
    sys.exit(main())

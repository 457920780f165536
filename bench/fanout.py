"""Websocket fan-out: time from a broadcast until N connected clients have it, the project's hub vs group_send.

Usage (from the project root):

    .venv/bin/python bench/fanout.py [--clients 1000,5000,10000] [--broadcasts 7] [--no-deflate]
        [--redis-url redis://127.0.0.1:6379/13] [--max-seconds 1500]

One run:

* migrates a temporary SQLite database, schedules a live drop and creates max(N) shoppers in bulk,
  and logs them in by writing their sessions straight into the session table (no password
  hashing: the session holds the auth keys ``login()`` would have written);
* starts two real servers, each ``uvicorn ... --workers 1 --no-access-log`` with the project's
  settings (``flashsale.settings.base``, DEBUG off) and the open-files soft limit raised to the
  hard limit: the project's ``flashsale.asgi:application`` exactly as the Procfile runs it, and
  ``bench/fanout_baseline_asgi.py``, which serves the same application plus a textbook Channels
  consumer at ``/ws/baseline/<slug>/`` (one group per drop, ``group_add`` on connect);
* for each N and each way, opens N websockets from this process (one asyncio event loop, a lean
  client protocol: no per-socket task, every frame timestamped on arrival) with the session
  cookie and an Origin the server allows, offering permessage-deflate as browsers do, and waits
  for every first frame;
* sends ``--warmup`` + ``--broadcasts`` broadcasts one after another: the project way calls
  ``waitingroom.realtime.drop_publish`` (a Redis pipeline read of the frame, then one PUBLISH that
  the server's ``Hub`` fans out); the baseline reads the same frame with ``drop_frame_get`` and
  calls ``group_send`` on a channels-redis core layer with the config the baseline server uses.
  Each broadcast sets the queue's ``serving`` counter to its own number first, and a few clients
  decode their frames to check that they got that broadcast's frame;
* records every client's latency from just before the publish call to the arrival of the frame,
  waits for all N (or ``--timeout``), and reads the server's CPU time (psutil) before and after,
  minus its idle rate measured with the N sockets open. Redis's and this process's CPU time
  over the same window are reported too (Redis is shared with other work on the machine).

``--gc-log`` (diagnosis) starts the same servers through a wrapper that logs every garbage
collection over 20 ms to the server log, and prints the long ones after each N.

Both servers and the load generator share the machine's CPUs. Redis keys live in their own
database (13 by default; 0 and 15 are refused) under the prefix ``fsbenchws`` and are deleted
afterwards, as is the temporary database. Everything stops by itself: each wait has a timeout
and the whole run is bounded by ``--max-seconds``. The Markdown report goes to stdout, progress
to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import json
import os
import platform
import random
import resource
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
REDIS_PREFIX = "fsbenchws"
FORBIDDEN_REDIS_DBS = {0, 15}  # the app's and the test suite's
DROP_SLUG = "fanout-bench"
SHOPPER_PREFIX = "fanoutbench"
WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
SETTLE_SECONDS = 0.25  # after the last arrival, for the server to finish its sends before reading its CPU
IDLE_SECONDS = 2.0
# --gc-log runs uvicorn through this: the same server, plus a gc callback that logs long collections.
GC_LOGGER = """
import gc, sys, time
started = [0.0]
def log_long(phase, info):
    if phase == "start":
        started[0] = time.perf_counter()
    elif (took := time.perf_counter() - started[0]) > 0.02:
        print(f"GC gen{info['generation']} {took * 1000:.0f} ms, collected {info['collected']}", flush=True)
gc.callbacks.append(log_long)
from uvicorn.main import main
sys.argv[0] = "uvicorn"
main()
"""
LOAD_AT_START = ""  # 1, 5 and 15 minute load averages when the run began (other work shares the machine)
# The baseline layer: the project's CHANNEL_LAYERS["default"] plus these (see the report's notes).
BASELINE_MAX_CONNECTIONS = 1000
BASELINE_CAPACITY = 1000


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", default="1000,5000,10000", help="comma-separated N (default 1000,5000,10000)")
    parser.add_argument("--broadcasts", type=int, default=7, help="measured broadcasts per N and way (default 7)")
    parser.add_argument("--warmup", type=int, default=1, help="unmeasured broadcasts first (default 1)")
    parser.add_argument("--timeout", type=float, default=20.0, help="seconds to wait for one broadcast (default 20)")
    parser.add_argument("--connect-concurrency", type=int, default=100, help="handshakes in flight (default 100)")
    parser.add_argument("--no-deflate", action="store_true", help="do not offer permessage-deflate")
    parser.add_argument("--ways", default="project,baseline", help="which ways to run (default project,baseline)")
    parser.add_argument(
        "--gc-log", action="store_true", help="diagnosis: log the servers' garbage collections over 20 ms"
    )
    parser.add_argument(
        "--web-workers", type=int, default=1, help="server processes of each way (uvicorn --workers; default 1)"
    )
    parser.add_argument(
        "--ws-impl",
        default="auto",
        choices=["auto", "websockets", "websockets-sansio", "wsproto"],
        help="uvicorn's websocket implementation for both servers (default: auto, as the Procfile)",
    )
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/13", help="Redis for the bench keys")
    parser.add_argument("--max-seconds", type=float, default=1500.0, help="bound on the whole run (default 1500)")
    args = parser.parse_args(argv)
    try:
        args.counts = [int(x) for x in args.clients.split(",") if x.strip()]
    except ValueError:
        parser.error("--clients takes integers separated by commas")
    args.way_list = [w.strip() for w in args.ways.split(",") if w.strip()]
    if not args.counts or min(args.counts) < 1 or args.broadcasts < 1 or args.warmup < 0:
        parser.error("--clients must be positive, --broadcasts at least 1, --warmup at least 0")
    if not set(args.way_list) <= {"project", "baseline"} or not args.way_list:
        parser.error("--ways takes project and/or baseline")
    db = int(urlsplit(args.redis_url).path.lstrip("/") or 0)
    if db in FORBIDDEN_REDIS_DBS:
        parser.error(f"--redis-url points at Redis database {db}; the bench keeps off databases 0 and 15")
    return args


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def raise_nofile_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def free_port() -> int:
    for _ in range(200):
        port = random.randint(18_001, 30_000)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port above 18000")


def percentile(sorted_values: list[float], pct: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return float("nan")
    rank = max(1, -(-len(sorted_values) * pct // 100))
    return sorted_values[int(rank) - 1]


# --- A lean websocket client -------------------------------------------------------------------


class Fanout:
    """Shared state of one broadcast: how many clients are still waiting for it."""

    def __init__(self) -> None:
        self.collecting = False
        self.expected = 0
        self.received = 0
        self.done = asyncio.Event()

    def start(self, expected: int) -> None:
        self.collecting, self.expected, self.received = True, expected, 0
        self.done.clear()

    def arrived(self) -> None:
        self.received += 1
        if self.received >= self.expected:
            self.done.set()


class WsClient(asyncio.Protocol):
    """A websocket client as small as it gets: it answers pings and timestamps every message.

    Server frames are parsed in ``data_received`` (no task per socket); ``verify`` clients also
    inflate and decode their messages so the run can check what was delivered.
    """

    def __init__(self, request: bytes, key: bytes, fanout: Fanout, *, verify: bool) -> None:
        self.request, self.fanout, self.verify = request, fanout, verify
        self.accept = base64.b64encode(hashlib.sha1(key + WS_GUID, usedforsecurity=False).digest())
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.upgraded = False
        self.inflate: zlib._Decompress | None = None
        self.reset_inflate = False
        self.handshake: asyncio.Future = asyncio.get_running_loop().create_future()
        self.first_frame: asyncio.Future = asyncio.get_running_loop().create_future()
        self.closed: asyncio.Future = asyncio.get_running_loop().create_future()
        self.arrival: float | None = None
        self.messages: list = []  # decoded messages (verify clients only)
        self.close_code: int | None = None
        self._partial: list[bytes] = []
        self._partial_compressed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.handshake.done():
            self.handshake.set_exception(ConnectionError("closed during the handshake"))
        if not self.first_frame.done():
            self.first_frame.set_result(None)  # the caller sees None: closed before the first frame
        if not self.closed.done():
            self.closed.set_result(self.close_code)

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        self.buf += data
        if not self.upgraded and not self._read_handshake():
            return
        buf = self.buf
        while len(buf) >= 2:
            b0, b1 = buf[0], buf[1]
            length, pos = b1 & 0x7F, 2
            if length == 126:
                if len(buf) < 4:
                    return
                length, pos = int.from_bytes(buf[2:4], "big"), 4
            elif length == 127:
                if len(buf) < 10:
                    return
                length, pos = int.from_bytes(buf[2:10], "big"), 10
            if len(buf) < pos + length:
                return
            payload = bytes(buf[pos : pos + length])
            del buf[: pos + length]
            self._frame(now, b0, payload)

    def _read_handshake(self) -> bool:
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            return False
        head = bytes(self.buf[:end]).decode("latin-1").split("\r\n")
        del self.buf[: end + 4]
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in head[1:])}
        if " 101 " not in head[0] + " " or headers.get("sec-websocket-accept", "").encode() != self.accept:
            self.handshake.set_exception(ConnectionError(f"handshake refused: {head[0]}"))
            self.transport.close()
            return False
        self.upgraded = True
        extensions = headers.get("sec-websocket-extensions", "")
        if "permessage-deflate" in extensions:
            self.inflate = zlib.decompressobj(-15)
            self.reset_inflate = "server_no_context_takeover" in extensions
        self.handshake.set_result(extensions)
        return True

    def _frame(self, now: float, b0: int, payload: bytes) -> None:
        opcode = b0 & 0x0F
        if opcode == 0x9:  # ping
            self._send(0xA, payload)
        elif opcode == 0x8:  # close
            self.close_code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
            self.transport.close()
        elif opcode in (0x0, 0x1, 0x2):
            if opcode != 0x0:
                self._partial_compressed = bool(b0 & 0x40)
            if self.verify:
                self._partial.append(payload)
            if b0 & 0x80:  # final fragment: one whole message
                self._message(now)

    def _message(self, now: float) -> None:
        if self.verify:
            raw = b"".join(self._partial)
            self._partial = []
            if self._partial_compressed and self.inflate is not None:
                if self.reset_inflate:
                    self.inflate = zlib.decompressobj(-15)
                raw = self.inflate.decompress(raw + b"\x00\x00\xff\xff")
            self.messages.append(json.loads(raw))
        if not self.first_frame.done():
            self.first_frame.set_result(now)
        elif self.fanout.collecting and self.arrival is None:
            self.arrival = now
            self.fanout.arrived()

    def _send(self, opcode: int, payload: bytes) -> None:
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.transport.write(bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + masked)

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self._send(0x8, (1000).to_bytes(2, "big"))


def handshake_request(port: int, path: str, session_key: str, *, deflate: bool) -> tuple[bytes, bytes]:
    key = base64.b64encode(os.urandom(16))
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key.decode()}",
        "Sec-WebSocket-Version: 13",
        f"Origin: http://127.0.0.1:{port}",
        f"Cookie: sessionid={session_key}",
    ]
    if deflate:
        lines.append("Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits")
    return ("\r\n".join(lines) + "\r\n\r\n").encode(), key


# --- Setup ---------------------------------------------------------------------------------------


def configure_environment(args: argparse.Namespace, tmp: str) -> dict[str, str]:
    """Set what Django reads in this process; return the server processes' environment."""
    env = {
        "DJANGO_SETTINGS_MODULE": "flashsale.settings.base",
        "DJANGO_DEBUG": "0",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "FLASHSALE_REDIS_PREFIX": REDIS_PREFIX,
        "REDIS_URL": args.redis_url,
        "DATABASE_URL": f"sqlite:///{tmp}/fanout.sqlite3",
        "LOG_LEVEL": "WARNING",
    }
    os.environ.update(env)
    return {**os.environ, **env}


def baseline_layer_config() -> dict:
    """The project's default channel layer with the pool cap raised (the layer both sides of the baseline use)."""
    from django.conf import settings

    config = json.loads(json.dumps(settings.CHANNEL_LAYERS["default"]))
    config["CONFIG"]["hosts"] = [{**h, "max_connections": BASELINE_MAX_CONNECTIONS} for h in config["CONFIG"]["hosts"]]
    config["CONFIG"]["capacity"] = BASELINE_CAPACITY
    return config


def redis_clean(client) -> int:
    deleted = 0
    batch: list[bytes] = []
    for key in client.scan_iter(match=f"{REDIS_PREFIX}:*", count=1000):
        batch.append(key)
        if len(batch) >= 1000:
            deleted += client.delete(*batch)
            batch.clear()
    if batch:
        deleted += client.delete(*batch)
    return deleted


def prepare_data(count: int, *, slug: str = DROP_SLUG, prefix: str = SHOPPER_PREFIX):
    """Schedule the live drop, create ``count`` shoppers and a signed-in session for each.

    Returns the drop, the session keys and the shoppers' ids (in the same order).
    """
    from datetime import timedelta
    from decimal import Decimal
    from importlib import import_module

    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
    from django.contrib.sessions.models import Session
    from django.core.cache import caches
    from django.utils import timezone
    from django.utils.crypto import get_random_string

    from inventory.services import drop_schedule
    from waitingroom.services import shoppers_create_bulk

    now = timezone.now()
    drop = drop_schedule(
        slug=slug,
        title=f"Bench drop {slug}",
        price=Decimal("10.00"),
        quantity=1000,
        starts_at=now,
        ends_at=now + timedelta(hours=2),
    )
    shoppers_create_bulk(count=count, prefix=prefix, password=get_random_string(24))
    users = list(get_user_model().objects.filter(username__startswith=prefix).order_by("pk")[:count])
    store_class = import_module(settings.SESSION_ENGINE).SessionStore
    store = store_class()
    expire = now + timedelta(seconds=settings.SESSION_COOKIE_AGE)
    backend = "django.contrib.auth.backends.ModelBackend"
    sessions = []
    for user in users:
        data = {SESSION_KEY: str(user.pk), BACKEND_SESSION_KEY: backend, HASH_SESSION_KEY: user.get_session_auth_hash()}
        sessions.append(Session(session_key=get_random_string(32), session_data=store.encode(data), expire_date=expire))
    Session.objects.bulk_create(sessions, batch_size=1000)
    # Sign-in through cached_db writes the cache too: put each session there, as a signed-in shopper's is.
    cache = caches[settings.SESSION_CACHE_ALIAS]
    age = settings.SESSION_COOKIE_AGE
    for start in range(0, len(sessions), 1000):
        batch = sessions[start : start + 1000]
        cache.set_many({store_class.cache_key_prefix + s.session_key: store.decode(s.session_data) for s in batch}, age)
    return drop, [s.session_key for s in sessions], [user.pk for user in users]


@dataclass
class Server:
    name: str
    app: str
    port: int
    proc: subprocess.Popen | None = None
    log_path: Path | None = None

    def start(
        self, env: dict[str, str], tmp: str, *, gc_log: bool = False, ws_impl: str = "auto", workers: int = 1
    ) -> None:
        self.log_path = Path(tmp) / f"{self.name}.log"
        cmd = [
            *([sys.executable, "-c", GC_LOGGER] if gc_log else [str(ROOT / ".venv/bin/uvicorn")]),
            self.app,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            str(workers),
            "--no-access-log",
            "--log-level",
            "warning",
            # As in the Procfile: frames are ~100 bytes, so compressing each one per socket only costs CPU.
            "--ws-per-message-deflate",
            "false",
            "--ws",
            ws_impl,
        ]
        with open(self.log_path, "wb") as out:
            self.proc = subprocess.Popen(
                cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, preexec_fn=raise_nofile_limit
            )

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} server exited: {self.log_tail()}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} server did not listen on {self.port} within {timeout:.0f}s")

    def cpu(self) -> float:
        import psutil

        # With --workers > 1 the work happens in the server's child processes: count them all.
        process = psutil.Process(self.proc.pid)
        total = 0.0
        for member in [process, *process.children(recursive=True)]:
            with contextlib.suppress(psutil.NoSuchProcess):
                times = member.cpu_times()
                total += times.user + times.system
        return total

    def log_tail(self, lines: int = 20) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


# --- Measuring -----------------------------------------------------------------------------------


@dataclass
class Result:
    n: int
    way: str
    latencies: list[float] = field(default_factory=list)  # seconds, every client of every measured broadcast
    last: list[float] = field(default_factory=list)  # seconds until the last client, per broadcast
    delivered: int = 0
    expected: int = 0
    server_cpu: list[float] = field(default_factory=list)  # net of idle, per broadcast
    redis_cpu: list[float] = field(default_factory=list)
    client_cpu: list[float] = field(default_factory=list)
    idle_cpu_rate: float = 0.0
    connected: int = 0
    connect_seconds: float = 0.0
    connect_errors: dict[str, int] = field(default_factory=dict)
    verify_errors: list[str] = field(default_factory=list)
    extensions: str = ""


def redis_cpu(client) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


class Bench:
    def __init__(self, args, drop, session_keys: list[str], servers: dict[str, Server], raw_redis) -> None:
        self.args, self.drop, self.session_keys, self.servers, self.raw = args, drop, session_keys, servers, raw_redis
        from waitingroom.redis_keys import queue_keys

        self.serving_key = queue_keys(drop.pk).serving
        self.counter = 1000
        self.layer = None

    # The two ways of broadcasting (run in a worker thread; each returns the perf_counter just before).

    def publish_project(self) -> float:
        from waitingroom.realtime import drop_publish

        started = time.perf_counter()
        drop_publish(drop=self.drop)
        return started

    def publish_baseline(self) -> float:
        from asgiref.sync import async_to_sync
        from channels.layers import get_channel_layer
        from fanout_baseline_asgi import LAYER_ALIAS, group_name

        from waitingroom.selectors import drop_frame_get

        layer = get_channel_layer(LAYER_ALIAS)
        started = time.perf_counter()
        frame = drop_frame_get(drop=self.drop)
        async_to_sync(layer.group_send)(group_name(self.drop.pk), {"type": "drop.update", "text": json.dumps(frame)})
        return started

    async def connect(self, way: str, n: int, fanout: Fanout, result: Result) -> list[WsClient]:
        loop = asyncio.get_running_loop()
        server = self.servers[way]
        path = f"/ws/drops/{DROP_SLUG}/" if way == "project" else f"/ws/baseline/{DROP_SLUG}/"
        gate = asyncio.Semaphore(self.args.connect_concurrency)
        clients: list[WsClient] = []

        async def one(i: int) -> None:
            request, key = handshake_request(server.port, path, self.session_keys[i], deflate=not self.args.no_deflate)
            client = WsClient(request, key, fanout, verify=i < 5)
            async with gate:
                try:
                    await loop.create_connection(lambda: client, "127.0.0.1", server.port)
                    result.extensions = await asyncio.wait_for(client.handshake, 30)
                    if await asyncio.wait_for(client.first_frame, 30) is None:
                        raise ConnectionError(f"closed before the first frame (code {client.close_code})")
                except (OSError, ConnectionError, TimeoutError) as exc:
                    name = str(exc)[:80] or exc.__class__.__name__
                    result.connect_errors[name] = result.connect_errors.get(name, 0) + 1
                    if client.transport is not None:
                        client.transport.abort()
                    return
            clients.append(client)

        started = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(n)))
        result.connect_seconds = time.perf_counter() - started
        result.connected = len(clients)
        return clients

    async def disconnect(self, clients: list[WsClient], batch: int = 100) -> None:
        """Close the sockets a batch at a time, so the server's disconnect handlers never pile up."""
        for start in range(0, len(clients), batch):
            group = clients[start : start + batch]
            for client in group:
                client.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*(c.closed for c in group), return_exceptions=True), 10)
            for client in group:
                if client.transport is not None and not client.transport.is_closing():
                    client.transport.abort()
            await asyncio.sleep(0.05)

    async def run_way(self, way: str, n: int) -> Result:
        args, result, fanout = self.args, Result(n=n, way=way), Fanout()
        server = self.servers[way]
        if way == "baseline":
            self.baseline_group_clear()
        log(f"{way}, N={n}: connecting")
        clients = await self.connect(way, n, fanout, result)
        log(
            f"{way}, N={n}: {len(clients)} connected in {result.connect_seconds:.1f}s"
            + (f"; errors {result.connect_errors}" if result.connect_errors else "")
        )
        if not clients:
            return result
        await asyncio.sleep(1.0)
        cpu0 = server.cpu()
        await asyncio.sleep(IDLE_SECONDS)
        result.idle_cpu_rate = (server.cpu() - cpu0) / IDLE_SECONDS
        publish = self.publish_project if way == "project" else self.publish_baseline
        for number in range(args.warmup + args.broadcasts):
            self.counter += 1
            self.raw.set(self.serving_key, self.counter)
            for client in clients:
                client.arrival = None
            fanout.start(len(clients))
            window_start, cpu0, redis0, own0 = (
                time.perf_counter(),
                server.cpu(),
                redis_cpu(self.raw),
                time.process_time(),
            )
            started = await asyncio.to_thread(publish)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(fanout.done.wait(), args.timeout)
            await asyncio.sleep(SETTLE_SECONDS)
            fanout.collecting = False
            window = time.perf_counter() - window_start
            cpu = server.cpu() - cpu0 - result.idle_cpu_rate * window
            redis_used, own = redis_cpu(self.raw) - redis0, time.process_time() - own0
            latencies = sorted(c.arrival - started for c in clients if c.arrival is not None)
            label = "warm-up" if number < args.warmup else f"{number - args.warmup + 1}/{args.broadcasts}"
            log(
                f"{way}, N={n}, broadcast {label}: {len(latencies)}/{len(clients)} in "
                f"{(latencies[-1] if latencies else float('nan')) * 1000:.0f} ms, server CPU {cpu:.3f}s"
            )
            self.verify(clients, result)
            if number >= args.warmup:
                result.latencies.extend(latencies)
                result.last.append(latencies[-1] if latencies else float("inf"))
                result.delivered += len(latencies)
                result.expected += n
                result.server_cpu.append(cpu)
                result.redis_cpu.append(redis_used)
                result.client_cpu.append(own)
            await asyncio.sleep(0.5)
        if args.gc_log:
            pauses = [line for line in server.log_tail(100_000).splitlines() if line.startswith("GC gen")]
            log(f"{way}, N={n}: server GC pauses over 20 ms so far: {len(pauses)}; the last ones: {pauses[-5:]}")
        dropped = sum(1 for c in clients if c.closed.done())
        if dropped:
            result.verify_errors.append(f"{dropped} sockets closed by the server during the broadcasts")
        log(f"{way}, N={n}: disconnecting")
        await self.disconnect(clients)
        await asyncio.sleep(1.0)
        if way == "baseline":
            left = self.raw.zcard(self.baseline_group_key())
            if left:
                result.verify_errors.append(f"{left} group members left after every socket closed")
        return result

    def verify(self, clients: list[WsClient], result: Result) -> None:
        for client in clients:
            if not client.verify or client.arrival is None:
                continue
            got = client.messages[-1]
            if got.get("type") != "drop" or got.get("serving") != self.counter:
                result.verify_errors.append(f"a client got {got!r}, expected serving={self.counter}")

    def baseline_group_key(self) -> str:
        from channels.layers import get_channel_layer
        from fanout_baseline_asgi import LAYER_ALIAS, group_name

        return f"{get_channel_layer(LAYER_ALIAS).prefix}:group:{group_name(self.drop.pk)}"

    def baseline_group_clear(self) -> None:
        self.raw.delete(self.baseline_group_key())

    async def run(self) -> list[Result]:
        results = []
        for index, n in enumerate(self.args.counts):
            ways = self.args.way_list if index % 2 == 0 else self.args.way_list[::-1]
            for way in ways:
                results.append(await self.run_way(way, n))
        return results


# --- Report --------------------------------------------------------------------------------------


def version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine_facts(raw, workers: int = 1) -> list[tuple[str, str]]:
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    server = raw.info("server")
    return [
        ("CPU", f"{model}, nproc {os.cpu_count()} (both servers, Redis and the load generator share these)"),
        ("Python", f"{platform.python_implementation()} {platform.python_version()} ({platform.platform()})"),
        ("Redis", f"{server['redis_version']} (redis-py {version('redis')})"),
        (
            "Server",
            f"uvicorn {version('uvicorn')} (websockets {version('websockets')}), "
            f"{'one worker' if workers == 1 else f'{workers} workers'} per way, "
            f"channels {version('channels')}, channels-redis {version('channels-redis')}, Django {version('Django')}",
        ),
        ("Open files", f"hard limit {resource.getrlimit(resource.RLIMIT_NOFILE)[1]} (soft raised to it)"),
        ("Load generator", "this process, one asyncio event loop, every socket a bare asyncio.Protocol"),
        ("Load average", f"{LOAD_AT_START} at the start, {' '.join(f'{x:.2f}' for x in os.getloadavg())} at the end"),
    ]


def command_line() -> str:
    return shlex.join([".venv/bin/python", "bench/fanout.py", *sys.argv[1:]])


def ms(seconds: float) -> str:
    return f"{seconds * 1000:,.0f}"


def report(args, results: list[Result], facts: list[tuple[str, str]]) -> str:
    for r in results:
        r.latencies.sort()
    lines = ["Machine:", ""]
    lines += [f"- {name}: {value}" for name, value in facts]
    lines += ["", "Command:", "", "```", command_line(), "```", ""]
    lines += [
        "| N | Way | p50 ms | p99 ms | max ms | last client ms (median broadcast) | delivered | "
        "server CPU-s / broadcast | Redis CPU-s / broadcast | load generator CPU-s / broadcast |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    by_key = {(r.n, r.way): r for r in results}
    names = {"project": "project (Hub, one PUBLISH)", "baseline": "Channels group_send"}
    for r in results:
        lat = r.latencies
        lines.append(
            f"| {r.n:,} | {names[r.way]} | {ms(percentile(lat, 50))} | {ms(percentile(lat, 99))} | "
            f"{ms(lat[-1] if lat else float('nan'))} | {ms(statistics.median(r.last)) if r.last else '-'} | "
            f"{r.delivered:,}/{r.expected:,} | {statistics.median(r.server_cpu):.3f} | "
            f"{statistics.median(r.redis_cpu):.3f} | {statistics.median(r.client_cpu):.3f} |"
            if r.expected
            else f"| {r.n:,} | {names[r.way]} | - | - | - | - | 0 connected | - | - | - |"
        )
    ratio_lines = []
    for n in args.counts:
        p, b = by_key.get((n, "project")), by_key.get((n, "baseline"))
        if p and b and p.latencies and b.latencies:
            ratio_lines.append(
                f"- N={n:,}: project/baseline p99 {percentile(p.latencies, 99) / percentile(b.latencies, 99):.2f}x, "
                f"server CPU per broadcast "
                f"{statistics.median(p.server_cpu) / max(statistics.median(b.server_cpu), 1e-9):.2f}x"
            )
    if ratio_lines:
        lines += ["", *ratio_lines]
    lines += ["", "Per run:", ""]
    for r in results:
        extra = "; ".join(r.verify_errors[:3]) or "every checked frame was that broadcast's frame"
        errors = f", connect errors {r.connect_errors}" if r.connect_errors else ""
        lines.append(
            f"- N={r.n:,} {r.way}: {r.connected:,} sockets opened in {r.connect_seconds:.1f}s{errors}; "
            f"idle server CPU {r.idle_cpu_rate:.3f} CPU-s/s (subtracted); "
            f"permessage-deflate: {'yes' if 'permessage-deflate' in r.extensions else 'no'}; {extra}"
        )
    return "\n".join(lines)


# --- Main ----------------------------------------------------------------------------------------


def run(args: argparse.Namespace, tmp: str, servers: dict[str, Server]) -> str:
    import django
    import redis

    env = configure_environment(args, tmp)
    django.setup()
    env["FANOUT_BASELINE_LAYER"] = os.environ["FANOUT_BASELINE_LAYER"] = json.dumps(baseline_layer_config())
    log("migrating the temporary database")
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True, timeout=300
    )
    raw = redis.Redis.from_url(args.redis_url)
    redis_clean(raw)
    log(f"creating the drop and {max(args.counts)} signed-in shoppers")
    drop, session_keys, _ids = prepare_data(max(args.counts))
    apps = {"project": "flashsale.asgi:application", "baseline": "bench.fanout_baseline_asgi:application"}
    for way in args.way_list:
        servers[way] = Server(way, apps[way], free_port())
        servers[way].start(env, tmp, gc_log=args.gc_log, ws_impl=args.ws_impl, workers=args.web_workers)
    for server in servers.values():
        server.wait_ready()
    log("servers up: " + ", ".join(f"{s.name} on {s.port} (pid {s.proc.pid})" for s in servers.values()))
    bench = Bench(args, drop, session_keys, servers, raw)

    async def bounded() -> list[Result]:
        return await asyncio.wait_for(bench.run(), args.max_seconds)

    results = asyncio.run(bounded())
    for server in servers.values():
        errors = [line for line in server.log_tail(100_000).splitlines() if "Error" in line or "Traceback" in line]
        if errors:
            shutil.copy(server.log_path, Path(tempfile.gettempdir()) / f"fanout-{server.name}-server.log")
            log(f"{server.name} server log has {len(errors)} error lines, the last: {errors[-1]}")
    return report(args, results, machine_facts(raw, args.web_workers))


def main(argv: list[str] | None = None) -> int:
    global LOAD_AT_START
    args = parse_args(argv)
    LOAD_AT_START = " ".join(f"{x:.2f}" for x in os.getloadavg())
    raise_nofile_limit()
    sys.path.insert(0, str(ROOT))
    tmp = tempfile.mkdtemp(prefix="flashsale-fanout-")
    servers: dict[str, Server] = {}
    try:
        print(run(args, tmp, servers))
        return 0
    finally:
        for server in servers.values():
            server.stop()
        with contextlib.suppress(Exception):
            import redis

            log(f"deleted {redis_clean(redis.Redis.from_url(args.redis_url))} bench keys")
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

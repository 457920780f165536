"""Bot mitigation's cost: server CPU per proof-of-work verification, and joins per second with every check
on against every check off, in one run.

    .venv/bin/python bench/bots.py [--joins 4000] [--verifications 20000]

* Verification: ``waitingroom.pow.pow_verify`` on real solved ALTCHA payloads (signature, expiry,
  shopper and drop binding), CPU time per call, against one bare HMAC-SHA256 of the same salt (the
  baseline: the least any signed check can cost).
* Joins: the same shoppers join two copies of one drop, alternating rounds. "Every check on" is
  ``services.queue_join`` (proof-of-work, suspicion score, device and card limits in the join script)
  after the fast path's one rate-limit call; "every check off" is ``services.ticket_issue`` with no
  proof-of-work, device, card or authorization check. Both make the join's one Redis call; the
  difference is what the checks cost. One process, one thread (the server's view of one request).

Keys go to Redis database 11 under the prefix ``fsbenchbots`` and are deleted; the database is a
temporary SQLite file. Prints a Markdown table with the machine and the command.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PREFIX = "fsbenchbots"
USER_AGENT = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36"


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--joins", type=int, default=4000, help="joins per way (default 4000)")
    parser.add_argument("--rounds", type=int, default=4, help="alternating rounds per way (default 4)")
    parser.add_argument("--verifications", type=int, default=20000, help="proof-of-work checks (default 20000)")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/11")
    return parser.parse_args(argv)


def setup(args: argparse.Namespace, db_path: str) -> None:
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
    sys.path.insert(0, str(ROOT))
    os.environ.update({
        "DJANGO_SETTINGS_MODULE": "flashsale.settings.base", "DATABASE_URL": f"sqlite:///{db_path}",
        "REDIS_URL": args.redis_url, "FLASHSALE_REDIS_PREFIX": PREFIX, "DJANGO_DEBUG": "0", "POW_COST": "50",
    })  # fmt: skip
    subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, check=True, env=os.environ)
    import django

    django.setup()


def clean(client) -> int:
    keys = list(client.scan_iter(match=f"{PREFIX}:*", count=5000))
    for start in range(0, len(keys), 5000):
        client.delete(*keys[start : start + 5000])
    return len(keys)


def solve(challenge: dict) -> str:
    import altcha

    solution = altcha.solve_challenge_v1(
        challenge["challenge"], challenge["salt"], challenge["algorithm"], challenge["maxnumber"], 0
    )
    return base64.b64encode(json.dumps({**challenge, "number": solution.number}).encode()).decode()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="flashsale-bench-bots-") as tmp:
        setup(args, str(Path(tmp) / "bench.sqlite3"))
        from flashsale.redis import redis_client

        client = redis_client()
        clean(client)
        try:
            print(run(args))
        finally:
            log(f"deleted {clean(client)} bench keys")
    return 0


def run(args: argparse.Namespace) -> str:
    from django.conf import settings
    from django.contrib.auth import get_user_model

    from inventory import services as inventory_services
    from payments.redis_keys import authorized_key
    from tests.factories import DropFactory
    from waitingroom import pow, services

    User = get_user_model()
    total = args.joins
    log(f"creating {total} shoppers and two drops")
    unusable = "!"  # an unusable password: these shoppers never sign in
    User.objects.bulk_create([User(username=f"b{i}", password=unusable) for i in range(total)])
    shoppers = list(User.objects.filter(username__startswith="b").values_list("pk", flat=True))
    drops = {name: DropFactory(slug=name, quantity=10, admission_rate=100) for name in ("checks-on", "checks-off")}
    for drop in drops.values():
        inventory_services.drop_arm(drop=drop)
        services.queue_start(drop=drop)
    on = drops["checks-on"]
    client_redis = inventory_services.redis_client()
    client_redis.hset(authorized_key(on.pk), mapping={s: f"card-{s}" for s in shoppers})

    log("solving proofs-of-work")
    payloads = {s: solve(pow.challenge_create(drop_id=on.pk, shopper_id=s)) for s in shoppers}

    # --- verification CPU -------------------------------------------------------------------------
    sample = [payloads[s] for s in shoppers[:200]]
    owners = shoppers[:200]
    key = f"altcha:{settings.SECRET_KEY}".encode()
    salts = [json.loads(base64.b64decode(p))["salt"].encode() for p in sample]
    n = args.verifications
    started = time.process_time()
    for i in range(n):
        pow.pow_verify(payload=sample[i % 200], drop_id=on.pk, shopper_id=owners[i % 200])
    verify_us = (time.process_time() - started) / n * 1e6
    started = time.process_time()
    for i in range(n):
        hmac.new(key, salts[i % 200], hashlib.sha256).hexdigest()
    hmac_us = (time.process_time() - started) / n * 1e6

    # --- joins with every check on vs off ------------------------------------------------------------
    from waitingroom.fastpath import RATELIMIT_ONLY, _rate  # the fast path's own limiter, called the same way

    limiter = client_redis.register_script(RATELIMIT_ONLY)

    def rate_limit(shopper_id: int) -> None:
        now = int(time.time())
        keys, argv = [], []
        for kind, rate in settings.RATE_LIMITS["queue-join"]:
            limit, period = _rate(rate)
            value = f"shopper:{shopper_id}" if kind == "shopper" else "ip:198.51.100.7"
            keys.append(f"{PREFIX}:rl:queue-join:{value}:{now - now % period}")
            argv.extend([limit * 1000, period])  # counted, never reached: the bench measures the cost
        limiter(keys=keys, args=[len(keys), *argv], client=client_redis)

    def checks_on(chunk):
        for s in chunk:
            rate_limit(s)
            services.queue_join(
                drop=on, shopper_id=s, pow_payload=payloads[s], fingerprint=f"device-{s:08d}",
                signals={"webdriver": False, "languages": 2}, user_agent=USER_AGENT, account_age=86_400 * 30,
                remote_ip="198.51.100.7",
            )  # fmt: skip

    def checks_off(chunk):
        for s in chunk:
            services.ticket_issue(drop=drops["checks-off"], shopper_id=s, require_authorization=False)

    rates = {"every check on": [], "every check off": []}
    per_round = total // args.rounds
    for r in range(args.rounds):
        chunk = shoppers[r * per_round : (r + 1) * per_round]
        for name, way in (("every check on", checks_on), ("every check off", checks_off))[:: 1 if r % 2 else -1]:
            started = time.perf_counter()
            way(chunk)
            rates[name].append(len(chunk) / (time.perf_counter() - started))
            log(f"round {r + 1}/{args.rounds}: {name}: {rates[name][-1]:,.0f} joins/s")
    queued = {name: client_redis.hlen(f"{PREFIX}:{{drop:{d.pk}}}:q:entries") for name, d in drops.items()}

    import redis as redis_module

    on_rate, off_rate = statistics.median(rates["every check on"]), statistics.median(rates["every check off"])
    lines = [
        "Machine:", "",
        f"- CPU: {platform.processor() or platform.machine()}, nproc {os.cpu_count()}",
        f"- Python: {platform.python_version()}; Redis {client_redis.info('server')['redis_version']} "
        f"(redis-py {redis_module.__version__})",
        "", "Command:", "", "```", " ".join([".venv/bin/python", "bench/bots.py", *sys.argv[1:]]), "```", "",
        "| Measure | Value | Baseline (same run) | Ratio |",
        "| --- | ---: | ---: | ---: |",
        f"| proof-of-work verification, CPU per call | {verify_us:.1f} µs | {hmac_us:.1f} µs (one HMAC-SHA256) "
        f"| {verify_us / hmac_us:.1f}x |",
        f"| joins/s, every check on (median of {args.rounds}) | {on_rate:,.0f} | {off_rate:,.0f} (every check off) "
        f"| {on_rate / off_rate:.2f}x |",
        "",
        f"- Joined: {queued['checks-on']:,} with checks, {queued['checks-off']:,} without "
        f"(of {per_round * args.rounds:,} each).",
    ]  # fmt: skip
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())

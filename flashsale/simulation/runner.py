"""Run a simulation: prepare in Django, drive the shoppers in one event loop, settle, report."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import resource
import time
from datetime import timedelta
from functools import partial
from typing import TextIO

import aiohttp
from django.conf import settings
from django.utils import timezone
from redis.exceptions import RedisClusterException, RedisError
from yarl import URL

from inventory.selectors import stock_get
from payments.selectors import authorization_counts
from payments.services import drop_holds_releasable

from .beat import LocalBeat, Monitor
from .config import SimulationConfig, shoppers_plan
from .report import OPEN_AUTHORIZATIONS, RunTimes, report_build
from .setup import simulation_drop_schedule, simulation_shoppers_create
from .shopper import LANES, Lane, Network, Shopper, pow_solve
from .stats import ShopperStats

logger = logging.getLogger(__name__)

LEAD_SECONDS = 2.0  # from scheduling the drop to the first arrival
HTTP_TIMEOUT = aiohttp.ClientTimeout(total=60, connect=10)
SETTLE_POLL = 1.0
# A Redis that does not answer for a moment (a cluster promoting a replica) is read again, for up to 30 s.
REDIS_AWAY = (RedisError, RedisClusterException)
REDIS_RETRIES, REDIS_RETRY_SECONDS = 60, 0.5
LAG_EVERY = 0.25  # how often the simulation's own event loop is checked for lag
KEEPALIVE_SECONDS = 3.0


class SimulationError(Exception):
    """The simulation could not start (server unreachable or not sharing this environment)."""


# The rate-limit groups a simulated shopper's requests fall under (sign-in only with --sign-in password).
SHOPPER_GROUPS = ("authorization", "challenge", "queue-join", "purchase")


def rate_limits_check(config: SimulationConfig) -> None:
    """Refuse, in one line, a run whose shoppers would exceed the server's per-address rate limits.

    Every simulated shopper comes from this machine's one address unless --forwarded-for gives
    each its own (behind TRUSTED_PROXY_COUNT=1). The server is assumed to run with this
    environment's settings, as ``make run`` and this command do by default.
    """
    if not settings.RATELIMIT_ENABLE or config.forwarded_for:
        return
    groups = (*SHOPPER_GROUPS, "sign-in") if config.sign_in == "password" else SHOPPER_GROUPS
    allowed = min(
        int(rate.split("/", 1)[0]) for group in groups for key, rate in settings.RATE_LIMITS[group] if key == "ip"
    )
    if config.shoppers > allowed:
        raise SimulationError(
            f"{config.shoppers} shoppers from one address exceed the server's limit of {allowed} per address: "
            "run the server and this command with RATELIMIT_ENABLE=0 (or pass --forwarded-for to a server "
            f"behind TRUSTED_PROXY_COUNT=1), or simulate at most {allowed} shoppers"
        )


def files_limit_raise() -> int:
    """Raise this process's open-files soft limit to the hard limit; return it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    return soft


def simulation_run(config: SimulationConfig, *, progress: TextIO | None = None) -> dict:
    """Run the whole simulation against ``config.url`` and return the report (see ``report_build``)."""
    progress = progress if config.progress else None
    rate_limits_check(config)
    files = files_limit_raise()
    sockets = min(config.sockets, max(0, files - len(LANES) * config.concurrency - 200))
    began = time.monotonic()
    plans = shoppers_plan(config)
    _say(progress, f"creating {len(plans):,} shoppers ({config.sign_in} sign-in)...")
    plans = simulation_shoppers_create(config=config, plans=plans)
    now = timezone.now()
    lead = LEAD_SECONDS + (config.prequeue_seconds if config.arrival == "prequeue" else 0.0)
    drop = simulation_drop_schedule(config=config, starts_at=now + timedelta(seconds=lead), now=now)
    starts_at = time.monotonic() + (drop.starts_at - timezone.now()).total_seconds()
    _say(progress, f"drop {drop.slug}: {drop.quantity:,} units, {drop.admission_rate}/s, starts in {lead:.0f} s")
    monitor = Monitor(drop)
    monitor.start()
    beat = LocalBeat() if config.tick_locally else None
    if beat is not None:
        beat.start()
    stats = ShopperStats()
    deadline = began + config.timeout
    try:
        arrivals_at = starts_at - config.prequeue_seconds if config.arrival == "prequeue" else starts_at
        unfinished, arrivals_began = asyncio.run(
            _drive(
                config,
                plans,
                slug=drop.slug,
                stats=stats,
                monitor=monitor,
                progress=progress,
                arrivals_at=arrivals_at,
                starts_at=starts_at,
                deadline=deadline,
                sockets=sockets,
            )
        )
        shoppers_done = time.monotonic()
        _say(progress, "shoppers done; waiting for holds and card authorizations to settle...")
        _settle(drop, until=min(deadline, shoppers_done + config.settle))
    finally:
        monitor.stop()
        if beat is not None:
            beat.stop()
    times = RunTimes(
        arrivals_began=arrivals_began,
        starts_at=starts_at,
        shoppers_done=shoppers_done,
        ended=time.monotonic(),
        timed_out=unfinished > 0,
        unfinished=unfinished,
    )
    for _ in range(REDIS_RETRIES):  # the report reads Redis: wait out a failover (a replica being promoted)
        try:
            return report_build(
                config=config,
                drop=drop,
                stats=stats,
                samples=monitor.samples,
                times=times,
                beat_failures=None if beat is None else beat.failures,
            )
        except REDIS_AWAY as exc:
            logger.warning("the report could not read Redis (%s); reading again", exc)
            time.sleep(REDIS_RETRY_SECONDS)
    raise SimulationError("Redis did not answer for the report")


def _settle(drop, *, until: float) -> None:
    """Wait until no unit is pending or held and, once the drop is over, no card hold is open."""
    while time.monotonic() < until:
        try:
            stock = stock_get(drop=drop)
        except REDIS_AWAY:  # away for a moment (a failover): the stores are read again at the next poll
            time.sleep(SETTLE_POLL)
            continue
        counts = authorization_counts(drop_id=drop.pk)
        holds_open = sum(counts[s] for s in OPEN_AUTHORIZATIONS)
        if stock.held == 0 and stock.pending == 0 and (holds_open == 0 or not drop_holds_releasable(drop=drop)):
            return
        time.sleep(SETTLE_POLL)


async def _drive(
    config: SimulationConfig,
    plans,
    *,
    slug: str,
    stats: ShopperStats,
    monitor: Monitor,
    progress: TextIO | None,
    arrivals_at: float,
    starts_at: float,
    deadline: float,
    sockets: int,
) -> tuple[int, float]:
    """Run every shopper's journey; return how many were unfinished at the deadline and when arrivals began."""
    base = URL(config.url.rstrip("/"))
    solver_pool = concurrent.futures.ProcessPoolExecutor(config.solvers) if config.solvers else None
    loop = asyncio.get_running_loop()

    async def solve(challenge: dict) -> str:
        if solver_pool is None:
            return pow_solve(challenge)
        return await loop.run_in_executor(solver_pool, partial(pow_solve, challenge))

    # Idle connections close before the server's keep-alive ends (uvicorn: 5 s), so that a request
    # never goes out on a connection the server is closing.
    lanes = {
        name: Lane(
            aiohttp.TCPConnector(
                limit=config.concurrency, limit_per_host=config.concurrency, keepalive_timeout=KEEPALIVE_SECONDS
            ),
            asyncio.Semaphore(config.concurrency),
        )
        for name in LANES
    }
    ws = aiohttp.TCPConnector(limit=0)
    fresh = aiohttp.TCPConnector(limit=0, force_close=True)  # requests in flight are bounded by the lanes
    try:
        await _check_server(base, lanes["others"].connector, slug)
        net = Network(
            base_url=base,
            slug=slug,
            lanes=lanes,
            ws=ws,
            fresh=fresh,
            sockets=asyncio.Semaphore(max(1, sockets)),
            solve=solve,
            stats=stats,
            starts_at=starts_at,
            deadline=deadline,
            forwarded_for=config.forwarded_for,
            session_cookie=settings.SESSION_COOKIE_NAME,
            csrf_cookie=settings.CSRF_COOKIE_NAME,
        )
        await asyncio.sleep(max(0.0, arrivals_at - time.monotonic()))
        arrivals_began = time.monotonic()
        tasks = [asyncio.create_task(_shopper(plan, net, arrivals_began)) for plan in plans]
        reporter = asyncio.create_task(_progress(progress, stats, monitor, len(plans), arrivals_began))
        lag = asyncio.create_task(_loop_lag(stats))
        _done, pending = await asyncio.wait(tasks, timeout=max(0.0, deadline - time.monotonic()))
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        stats.outcomes["timed_out"] += len(pending)
        reporter.cancel()
        lag.cancel()
        await asyncio.gather(reporter, lag, return_exceptions=True)
        _progress_line(progress, stats, monitor, len(plans), arrivals_began, final=True)
        return len(pending), arrivals_began
    finally:
        for lane in lanes.values():
            await lane.connector.close()
        await ws.close()
        await fresh.close()
        if solver_pool is not None:
            solver_pool.shutdown(cancel_futures=True)


async def _check_server(base: URL, http: aiohttp.BaseConnector, slug: str) -> None:
    """Make sure the server answers and sees the drop just scheduled (same database)."""
    async with aiohttp.ClientSession(connector=http, connector_owner=False, timeout=HTTP_TIMEOUT) as session:
        try:
            async with session.get(base.with_path("/healthz")) as response:
                if response.status != 200:
                    raise SimulationError(f"{base}/healthz answered {response.status}")
            for _ in range(10):  # the server caches drops for up to a second
                async with session.get(base.with_path(f"/api/drops/{slug}")) as response:
                    if response.status == 200:
                        return
                await asyncio.sleep(0.5)
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise SimulationError(f"the server at {base} does not answer: {exc}") from exc
    raise SimulationError(
        f"the server at {base} does not know drop {slug!r}: it must use this environment's database and Redis"
    )


async def _shopper(plan, net: Network, arrivals_began: float) -> None:
    await asyncio.sleep(max(0.0, arrivals_began + plan.arrives_at - time.monotonic()))
    try:
        outcome = await Shopper(plan, net).run()
    except Exception:  # a bug in the simulator, not in the server: count it and keep the others going
        logger.exception("simulated shopper %s failed", plan.username)
        outcome = "simulator_error"
    net.stats.outcomes[outcome] += 1
    net.stats.outcomes_by_role[plan.role.value][outcome] += 1


async def _loop_lag(stats: ShopperStats) -> None:
    """Record how late this loop wakes a sleeper: time every shopper's step waits in the client, not the server."""
    while True:
        asked = time.monotonic()
        await asyncio.sleep(LAG_EVERY)
        stats.loop_lag.append(max(0.0, time.monotonic() - asked - LAG_EVERY))


async def _progress(stream: TextIO | None, stats, monitor, total: int, began: float) -> None:
    if stream is None:
        return
    every = 0.5 if stream.isatty() else 5.0
    while True:
        await asyncio.sleep(every)
        _progress_line(stream, stats, monitor, total, began)


def _progress_line(stream, stats: ShopperStats, monitor: Monitor, total: int, began: float, final=False) -> None:
    if stream is None:
        return
    sample = monitor.latest
    steps = stats.steps
    done = sum(stats.outcomes.values())
    width = 24
    filled = int(width * done / total) if total else width
    drop = (
        f"serving {sample.serving:,}/{sample.last_ticket:,} stock {sample.stock} held {sample.holds}"
        if sample
        else "no sample yet"
    )
    line = (
        f"[{'#' * filled}{'.' * (width - filled)}] {time.monotonic() - began:6.1f}s "
        f"done {done:,}/{total:,} arrived {steps['arrived']:,} joined {steps['joined']:,} "
        f"admitted {steps['admitted']:,} bought {steps['bought']:,} | {drop} | "
        f"5xx {sum(stats.server_errors.values())}"
    )
    if stream.isatty():
        stream.write("\r" + line + ("\n" if final else ""))
    else:
        stream.write(line + "\n")
    stream.flush()


def _say(stream: TextIO | None, text: str) -> None:
    if stream is not None:
        stream.write(text + "\n")
        stream.flush()

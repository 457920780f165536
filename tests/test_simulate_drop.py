"""simulate_drop at a small scale against a live server (uvicorn in a thread) and the session's localstripe."""

import contextlib
import io
import json

import pytest
from django.core.management import call_command

from flashsale.simulation.shopper import UNNAMED_503_WAIT, _retry_wait
from tests.conftest import serving_asgi
from waitingroom import selectors

pytestmark = pytest.mark.slow

SHOPPERS, UNITS = 300, 20


@pytest.fixture
def live_server_url(transactional_db, stripe_settings):
    """Serve the project's ASGI application (HTTP and websockets) on a free port, Stripe at localstripe."""
    settings = stripe_settings
    settings.ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
    # Every simulated shopper comes from this one address, and their proofs-of-work are solved here.
    settings.RATELIMIT_ENABLE = False
    settings.POW_COST = 50
    selectors.drop_cache_clear()
    with serving_asgi() as url:
        yield url


def test_a_small_drop_sells_every_unit_once_with_no_server_error(live_server_url):
    # Given 300 shoppers for 20 units: 5% scripted bots, 5% declined cards, 5% who never buy
    out = io.StringIO()

    # When they arrive over a 15-second pre-queue (so every bot meets the checks before
    # the sell-out, however fast the server), signing in with their passwords, and beat ticks here
    call_command(
        "simulate_drop",
        *("--url", live_server_url, "--shoppers", str(SHOPPERS), "--units", str(UNITS)),
        *("--arrival", "prequeue", "--prequeue", "15"),
        *("--bots", "0.05", "--declined", "0.05", "--no-buy", "0.05", "--rate", "25", "--seed", "7"),
        # Enough to make it a crowd; more only makes the two cores (server, Redis, localstripe, these
        # shoppers) take turns.
        *("--concurrency", "40"),
        *("--sign-in", "password", "--tick-locally", "--timeout", "90", "--settle", "30"),
        *("--slug", "sim-test", "--prefix", "simtest", "--json", "--no-progress"),
        stdout=out,
    )

    # Then every unit is sold exactly once, the stores agree, and nothing failed on the server
    report = json.loads(out.getvalue())
    assert report["ok"] is True
    assert report["oversold"] == 0
    assert report["server_errors_5xx"] == 0
    assert report["unanswered_requests"] == {}
    assert report["timed_out"] is False
    assert report["units_accounted"] == {
        "quantity": UNITS,
        "paid": UNITS,
        "pending": 0,
        "held": 0,
        "free": 0,
        "all_accounted": True,
    }
    assert report["orders_paid"] == UNITS
    assert report["holds_left"] == 0
    assert report["database_and_redis_agree"] is True
    assert report["time_to_sell_out_seconds"] is not None
    # Every scripted bot that reached the join was refused there (the others among the 15 arrived after the
    # sell-out: when the two cores are slow, a few do). A declined card is found only when its hold is placed,
    # a few seconds before its turn (payment_required; the simulated shopper gives up): the ones whose turn
    # never came before the sell-out were told it sold out, and none of them bought or was charged.
    by_role = report["outcomes_by_role"]
    assert set(by_role["bot"]) <= {"refused_as_bot", "sold_out"}
    assert by_role["bot"]["refused_as_bot"] >= 1
    assert set(by_role["declined"]) <= {"declined", "sold_out"}
    assert sum(by_role["bot"].values()) == sum(by_role["declined"].values()) == 15
    assert by_role["buyer"]["bought"] == UNITS
    assert report["outcomes"]["bought"] == UNITS
    assert sum(report["outcomes"].values()) == SHOPPERS
    assert report["errors"]["403 bot_suspected"] == by_role["bot"]["refused_as_bot"]
    assert "402 card_declined" not in report["errors"]
    assert "503 payments_busy" not in report["errors"]
    assert report["joins"]["answered"] == report["joins"]["attempted"]
    # Winners' holds are captured; every loser's hold is canceled before the run ends.
    authorizations = report["authorizations"]
    assert authorizations["captured"] == UNITS
    # Only the declined cards' holds failed: each such shopper was told "declined", unless the sell-out
    # reached them first (then "sold out" is their outcome, and just as final)
    assert by_role["declined"].get("declined", 0) <= authorizations["failed"] <= sum(by_role["declined"].values())
    assert report["authorizations_open"] == 0
    assert authorizations["canceled"] == sum(authorizations.values()) - UNITS - authorizations["failed"]
    assert report["websocket"]["opened"] > 0
    assert report["admission_rate"]["setting"] == 25
    lag = report["simulator_loop_lag_ms"]
    assert 0 <= lag["p50"] <= lag["p99"] <= lag["max"]


def test_the_simulation_measures_how_late_its_own_event_loop_wakes():
    import asyncio
    import time

    from flashsale.simulation.runner import LAG_EVERY, _loop_lag
    from flashsale.simulation.stats import ShopperStats

    async def scenario():
        stats = ShopperStats()
        watcher = asyncio.create_task(_loop_lag(stats))
        await asyncio.sleep(LAG_EVERY / 2)
        time.sleep(0.6)  # a step that holds the loop, as 18,000 websockets' frames do
        await asyncio.sleep(LAG_EVERY * 3)
        watcher.cancel()
        return stats.loop_lag

    # Given a loop held for 0.6 s, 0.125 s into the watcher's 0.25 s sleep: the watcher woke about
    # 0.475 s late once (bounds leave room for a busy machine)
    lags = asyncio.run(scenario())
    assert 0.4 <= max(lags) <= 1.5
    # and about on time otherwise
    assert min(lags) < 0.3


def test_a_shopper_without_a_socket_polls_by_the_eta():
    from flashsale.simulation.shopper import POLL_MAX_SECONDS, POLL_START_SPREAD, poll_wait

    # Before the start there is nothing to learn: the first read comes at the start, spread over a few seconds
    assert 40 <= poll_wait({"eta_seconds": None}, until_start=40) <= 40 + POLL_START_SPREAD
    # Far back: seldom (capped), near the front: about every second
    assert poll_wait({"eta_seconds": 10_000}, until_start=-1) <= POLL_MAX_SECONDS * 1.2
    assert 0.8 * 80 / 4 <= poll_wait({"eta_seconds": 80}, until_start=-1) <= 1.2 * 80 / 4
    assert poll_wait({"eta_seconds": 0}, until_start=-1) <= 2 * 1.2
    assert poll_wait({"eta_seconds": None}, until_start=-1) <= 2 * 1.2


@contextlib.asynccontextmanager
async def _shopper_at(port: int, *, started: float = 0.0):
    """A simulated buyer of drop ``s`` on a server at ``port`` (its drop started ``started`` s ago); its stats."""
    import asyncio
    import time

    import aiohttp
    from yarl import URL

    from flashsale.simulation.config import Role, ShopperPlan
    from flashsale.simulation.shopper import LANES, Lane, Network, Shopper
    from flashsale.simulation.stats import ShopperStats

    stats = ShopperStats()
    net = Network(
        base_url=URL(f"http://127.0.0.1:{port}"), slug="s", ws=aiohttp.TCPConnector(),
        fresh=aiohttp.TCPConnector(force_close=True),
        lanes={name: Lane(aiohttp.TCPConnector(), asyncio.Semaphore(4)) for name in LANES},
        sockets=asyncio.Semaphore(1), solve=None, stats=stats, starts_at=time.monotonic() - started,
        deadline=time.monotonic() + 30, forwarded_for=False, session_cookie="sessionid", csrf_cookie="csrftoken",
    )  # fmt: skip
    plan = ShopperPlan(0, "s0", Role.BUYER, "pm_card_visa", "ua", {}, "fp-00000000", "10.0.0.1", 0.0)
    shopper = Shopper(plan, net)
    try:
        yield shopper, stats
    finally:
        for session in shopper.sessions.values():
            await session.close()
        for lane in net.lanes.values():
            await lane.connector.close()
        await net.ws.close()
        await net.fresh.close()


def _against_a_dropping_server(drops: int, body: bytes, act):
    """Run ``act(shopper)`` against a server that closes its first ``drops`` connections without an answer."""
    import asyncio

    async def scenario():
        seen = []

        async def handle(reader, writer):
            await reader.readuntil(b"\r\n\r\n")
            seen.append(len(seen))
            if len(seen) <= drops:
                writer.close()
                return
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                         % (len(body), body))  # fmt: skip
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with _shopper_at(port) as (shopper, stats):
            try:
                return await act(shopper), stats, sorted(shopper.sessions)
            except Exception as exc:  # the journey's end (JourneyOver) is the answer under test
                return exc, stats, sorted(shopper.sessions)
            finally:
                server.close()

    return asyncio.run(scenario())


def test_a_request_whose_connection_is_closed_under_it_is_sent_once_more_as_a_browser_does():
    def sign_in(shopper):  # a POST: aiohttp repeats a GET on a dropped connection by itself
        return shopper._call("sign_in", "POST", "/api/session", body={})

    # Given a server that closes the first connection before answering
    answer, stats, pools = _against_a_dropping_server(1, b'{"authenticated": true}', sign_in)
    # Then the request is sent once more, on a new connection rather than another idle one, and answered
    assert answer == (200, {"authenticated": True})
    assert pools == ["fresh", "others"]
    assert sum(stats.resent.values()) == 1
    assert not stats.unanswered

    # Given a server that closes the connection twice: the shopper gives up, counted as unanswered
    answer, stats, _pools = _against_a_dropping_server(2, b'{"authenticated": true}', sign_in)
    assert getattr(answer, "outcome", None) == "no_answer_sign_in"
    assert sum(stats.unanswered.values()) == 1


def test_a_position_read_with_no_answer_is_missed_and_read_again_later_as_the_page_polls():
    last = {"status": "waiting", "position": 40, "eta_seconds": 8}
    read = b'{"status": "admitted", "position": 0}'

    # Given a server that drops every connection (aiohttp repeats a GET once by itself, then the resend)
    answer, stats, _pools = _against_a_dropping_server(10, read, lambda shopper: shopper._read_entry(last))
    # Then the shopper keeps what it knew (its journey goes on), and the read counts as missed, not unanswered
    assert answer == last
    assert sum(stats.missed.values()) == 1
    assert not stats.unanswered

    # Given a server that answers: the next read learns the admission
    answer, stats, _pools = _against_a_dropping_server(0, read, lambda shopper: shopper._read_entry(last))
    assert answer == {"status": "admitted", "position": 0}
    assert not stats.missed


def test_the_admission_rate_is_measured_on_the_ticks_clock_within_the_stretches_only_the_rate_held_back():
    from flashsale.simulation.beat import Sample
    from flashsale.simulation.report import admission_rate_measure

    # Given ticks a second apart (on Redis's clock) that each admit 500 until 1,500 are in, read by a sampler
    # every quarter second whose own clock wanders by up to 0.2 s
    samples, serving, tick_at = [], 0, 100.0
    for quarter in range(40):
        if quarter % 4 == 1:
            tick_at += 1.0
            if serving < 1_500:
                serving += 500
        wander = 0.2 if quarter == 9 else 0.0  # the sample that sees the third step
        samples.append(
            Sample(at=50 + quarter / 4 + wander, serving=serving, last_ticket=90_000, admitted=serving,
                   stock=1_000, holds=0, length=90_000 - serving, tick_at=tick_at)
        )  # fmt: skip

    # When the cap (3 x 1,000 free) always has room
    measured = admission_rate_measure(samples, cap_multiple=3, rate=500)
    # Then free flow runs from the first step to the last (500 -> 1,500): 1,000 over 2 s on the ticks' clock
    assert measured["free_flow"] == 500.0
    assert measured["free_flow_seconds"] == 2.0
    assert measured["free_flow_ticks"] == 2
    # The sampler's clock, 0.2 s late at one end, reads 1,000 over 2.2 s
    assert measured["free_flow_sampled"] == 454.5
    assert measured["while_moving"] == 500.0

    # When the cap (2 x 1,000) has less than a second's worth of room left after the third step
    measured = admission_rate_measure(samples, cap_multiple=2, rate=500)
    # Then that step is not free flow; while moving still counts it
    assert measured["free_flow_ticks"] == 1
    assert measured["free_flow_seconds"] == 1.0
    assert measured["while_moving_seconds"] == 2.0
    # A run that never moved has no rate
    assert admission_rate_measure(samples[:1], cap_multiple=2, rate=500)["free_flow"] is None


@pytest.mark.django_db
def test_a_run_with_no_measurement_says_so_rather_than_none(make_drop):
    from flashsale.simulation import SimulationConfig, report_format
    from flashsale.simulation.report import RunTimes, report_build
    from flashsale.simulation.stats import ShopperStats

    # Given a run that ended before anything could be measured (no joins, no samples, no loop lag)
    drop = make_drop()
    times = RunTimes(arrivals_began=0.0, starts_at=0.0, shoppers_done=0.0, ended=0.0, timed_out=False, unfinished=0)
    report = report_build(
        config=SimulationConfig(url="http://127.0.0.1:1"), drop=drop, stats=ShopperStats(), samples=[], times=times,
        beat_failures=None,
    )  # fmt: skip

    # When the report is printed
    text = report_format(report)

    # Then it never prints None
    assert "None" not in text
    assert "not measured in free flow" in text


@pytest.mark.parametrize(("shoppers", "forwarded_for", "enabled", "refused"), [
    (61, False, True, True),
    (60, False, True, False),
    (5000, True, True, False),
    (5000, False, False, False),
])  # fmt: skip
def test_a_run_the_servers_per_address_limits_would_refuse_is_refused_in_one_line(
    settings, shoppers, forwarded_for, enabled, refused
):
    from flashsale.simulation import SimulationConfig
    from flashsale.simulation.runner import SimulationError, rate_limits_check

    # Given the server's limits as `make run` has them (card step: 60 a minute per address)
    settings.RATELIMIT_ENABLE = enabled
    config = SimulationConfig(url="http://127.0.0.1:8000", shoppers=shoppers, forwarded_for=forwarded_for)

    # When the simulation checks them before it starts
    if not refused:
        rate_limits_check(config)
        return
    with pytest.raises(SimulationError) as raised:
        rate_limits_check(config)

    # Then it says in one line which settings the server needs
    message = str(raised.value)
    assert "\n" not in message
    assert "RATELIMIT_ENABLE=0" in message
    assert "at most 60 shoppers" in message


def _against_a_fake_drop(act, *, purchases: list[tuple[int, dict]], entries: list[dict]):
    """Run ``act(shopper)`` against a fake drop: its websocket sends a drop frame every 0.1 s with admission
    moving past ticket 3 and never an entry frame; ``GET .../queue`` answers ``entries`` in turn (the last one then on),
    ``POST .../purchase`` answers ``purchases`` in turn. Returns (the act's answer, the requests seen)."""
    import asyncio
    import itertools

    from aiohttp import web

    seen = []

    async def socket(request):
        ws = web.WebSocketResponse()
        await ws.prepare(request)

        async def ticks():  # a frame every tick, as the server sends: the socket is never silent
            for serving in itertools.count():
                await ws.send_json({"type": "drop", "state": "live", "serving": min(serving, 9), "length": 10})
                await asyncio.sleep(0.1)

        sender = asyncio.create_task(ticks())
        async for _message in ws:  # until the client closes
            pass
        sender.cancel()
        return ws

    async def queue(request):
        seen.append("read")
        return web.json_response(entries[min(seen.count("read"), len(entries)) - 1])

    async def purchase(request):
        seen.append("purchase")
        status, body = purchases[seen.count("purchase") - 1]
        return web.json_response(body, status=status)

    async def scenario():
        app = web.Application()
        app.add_routes([web.get("/ws/drops/s/", socket), web.get("/api/drops/s/queue", queue),
                        web.post("/api/drops/s/purchase", purchase)])  # fmt: skip
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        async with _shopper_at(port, started=1) as (shopper, _stats):
            try:
                return await asyncio.wait_for(act(shopper), timeout=4)  # the socket's silence alone would take 5 s
            finally:
                await runner.cleanup()

    return asyncio.run(scenario()), seen


WAITING = {"status": "waiting", "ticket": 3, "position": 3, "serving": 0, "eta_seconds": 1}
ADMITTED = {"status": "admitted", "ticket": 3, "position": 0, "serving": 3, "eta_seconds": 0}
PAID = {"order": {"status": "paid", "quantity": 1}}


def test_a_shopper_whose_entry_frame_was_lost_reads_the_entry_when_admission_passes_its_ticket():
    # Given a socket whose drop frames show admission passing ticket 3, with no entry frame (lost)
    answer, seen = _against_a_fake_drop(
        lambda shopper: shopper._wait_until_decided(dict(WAITING)), purchases=[], entries=[ADMITTED]
    )
    # Then the shopper reads its entry once and learns the admission, instead of waiting on the socket forever
    assert answer["status"] == "admitted"
    assert seen == ["read"]


async def admitted_journey(shopper):
    """The shopper's journey from an admission on (signed in, card given and joined already)."""

    async def nothing():
        return None

    async def joined():
        return dict(ADMITTED)

    shopper._sign_in = shopper._authorize = nothing
    shopper._join = joined
    return await shopper._journey()


def test_a_shopper_told_not_admitted_after_an_outage_waits_for_the_admission_again_and_buys():
    # Given an admission Redis lost: the purchase says not admitted, the entry is waiting, then admitted again
    not_admitted = (403, {"error": {"code": "not_admitted", "message": "..."}})
    outcome, seen = _against_a_fake_drop(
        admitted_journey, purchases=[not_admitted, (201, PAID)], entries=[WAITING, ADMITTED]
    )
    # Then the shopper keeps its place, is admitted again and buys
    assert outcome == "bought"
    assert seen == ["purchase", "read", "read", "purchase"]


def test_a_purchase_still_in_progress_is_asked_again_until_it_has_its_order(monkeypatch):
    from flashsale.simulation import shopper as simulated

    monkeypatch.setattr(simulated, "PURCHASE_WAIT_SECONDS", 0.1)

    # Given a purchase that was in flight when Redis went away: 409 purchase_in_progress until settled
    in_progress = (409, {"error": {"code": "purchase_in_progress", "message": "..."}})
    outcome, seen = _against_a_fake_drop(
        admitted_journey, purchases=[in_progress, in_progress, (200, PAID)], entries=[ADMITTED]
    )
    # Then the shopper asks again (the same purchase) and learns it was paid, instead of giving up
    assert outcome == "bought"
    assert seen == ["purchase", "purchase", "purchase"]


def test_the_simulated_shopper_retries_what_the_page_retries():
    # A load balancer's own 503 names no Retry-After: the page waits 2 s and asks again; so does the shopper
    assert _retry_wait(503, "no_error_code", None) == UNNAMED_503_WAIT == 2.0
    assert _retry_wait(503, "service_unavailable", "3") == 3.0
    assert _retry_wait(429, "rate_limited", "1") == 1.0
    assert _retry_wait(408, "no_error_code", None) == 0.1  # a proxy's: the request never reached a server
    assert _retry_wait(409, "sold_out", None) is None
    assert _retry_wait(500, "no_error_code", None) is None

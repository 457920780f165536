"""simulate_drop at a small scale against a live server (uvicorn in a thread) and the session's localstripe."""

import io
import json

import pytest
from django.core.management import call_command

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

    # When they all arrive in the same second, signing in with their passwords, and beat ticks here
    call_command(
        "simulate_drop",
        *("--url", live_server_url, "--shoppers", str(SHOPPERS), "--units", str(UNITS)),
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
    # Every scripted bot is refused at the join, every declined card at the authorization.
    assert report["outcomes"]["bought"] == UNITS
    assert report["outcomes"]["refused_as_bot"] == 15
    assert report["outcomes"]["declined"] == 15
    assert sum(report["outcomes"].values()) == SHOPPERS
    assert report["errors"]["403 bot_suspected"] == 15
    assert report["errors"]["402 card_declined"] == 15
    assert report["joins"]["answered"] == report["joins"]["attempted"]
    # Winners' holds are captured; every loser's hold is canceled before the run ends.
    authorizations = report["authorizations"]
    assert authorizations["captured"] == UNITS
    assert authorizations["failed"] == 15
    assert report["authorizations_open"] == 0
    assert authorizations["canceled"] == sum(authorizations.values()) - UNITS - 15
    assert report["websocket"]["opened"] > 0
    assert report["admission_rate"]["setting"] == 25


def test_a_shopper_without_a_socket_polls_by_the_eta():
    from waitingroom.simulation.shopper import POLL_MAX_SECONDS, POLL_START_SPREAD, poll_wait

    # Before the start there is nothing to learn: the first read comes at the start, spread over a few seconds
    assert 40 <= poll_wait({"eta_seconds": None}, until_start=40) <= 40 + POLL_START_SPREAD
    # Far back: seldom (capped), near the front: about every second
    assert poll_wait({"eta_seconds": 10_000}, until_start=-1) <= POLL_MAX_SECONDS * 1.2
    assert 0.8 * 80 / 4 <= poll_wait({"eta_seconds": 80}, until_start=-1) <= 1.2 * 80 / 4
    assert poll_wait({"eta_seconds": 0}, until_start=-1) <= 2 * 1.2
    assert poll_wait({"eta_seconds": None}, until_start=-1) <= 2 * 1.2

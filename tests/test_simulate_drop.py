"""simulate_drop at a small scale against a live server (uvicorn in a thread) and the session's localstripe."""

import io
import json
import socket
import threading
import time

import pytest
import uvicorn
from django.core.management import call_command
from django.db import connections

from waitingroom import selectors

pytestmark = pytest.mark.slow

SHOPPERS, UNITS = 300, 20


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def live_server_url(transactional_db, stripe_settings, monkeypatch):
    """Serve the project's ASGI application (HTTP and websockets) on a free port, Stripe at localstripe."""
    from flashsale.asgi import application

    # Django runs each ASGI request in a thread of its own, so a persistent connection (CONN_MAX_AGE,
    # 60 s on PostgreSQL in base.py) is left open by every request's thread: hundreds of requests
    # exhaust PostgreSQL's 100 connections. Close each request's connection when it finishes.
    monkeypatch.setitem(connections.settings["default"], "CONN_MAX_AGE", 0)

    settings = stripe_settings
    settings.ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
    # Every simulated shopper comes from this one address, and their proofs-of-work are solved here.
    settings.RATELIMIT_ENABLE = False
    settings.POW_COST = 50
    selectors.drop_cache_clear()
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(application, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "the ASGI server did not start"
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


def test_a_small_drop_sells_every_unit_once_with_no_server_error(live_server_url):
    # Given 300 shoppers for 20 units: 5% scripted bots, 5% declined cards, 5% who never buy
    out = io.StringIO()

    # When they all arrive in the same second, signing in with their passwords, and beat ticks here
    call_command(
        "simulate_drop",
        *("--url", live_server_url, "--shoppers", str(SHOPPERS), "--units", str(UNITS)),
        *("--bots", "0.05", "--declined", "0.05", "--no-buy", "0.05", "--rate", "25", "--seed", "7"),
        # Django runs each request's sync code in a thread of its own, and the test settings' Redis
        # pool refuses a 101st connection (redis-py 8 raises instead of waiting): stay well below.
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

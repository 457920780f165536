"""The database away for a few seconds: joins and positions keep working (they never touch it), purchases
and other database work fail cleanly with 503, and everything answers again once it is back."""

import json
from datetime import timedelta

import pytest
import requests
from django.db import connection, connections
from django.utils import timezone

from inventory import services as inventory_services
from inventory.redis_keys import drop_tag
from tests.conftest import BROWSER_USER_AGENT, serving_asgi
from tests.factories import DropFactory, UserFactory
from tests.waitingroom.support import authorize, solved
from waitingroom import services

from .conftest import TcpProxy

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture
def database_through_proxy(monkeypatch):
    """New database connections (the server's threads) go through a proxy the test can cut."""
    if connection.vendor != "postgresql":
        pytest.skip("SQLite is a file in this process: there is no database server to take away")
    proxy = TcpProxy(int(connection.settings_dict["PORT"] or 5432))
    monkeypatch.setitem(connections.settings["default"], "HOST", "127.0.0.1")
    monkeypatch.setitem(connections.settings["default"], "PORT", str(proxy.port))
    yield proxy
    # Straight back to the real server, and no connection of this thread left on the proxy.
    monkeypatch.undo()
    connections.close_all()
    proxy.down()


def test_joins_keep_working_while_the_database_is_away(database_through_proxy, settings, redis):
    settings.ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
    settings.POW_COST = 200
    drop = DropFactory(slug="air", quantity=5)
    inventory_services.drop_arm(drop=drop)
    services.queue_start(drop=drop)
    user = UserFactory(date_joined=timezone.now() - timedelta(days=30))
    authorize(redis, drop, user)

    with serving_asgi() as base:
        browser = requests.Session()
        browser.headers["User-Agent"] = BROWSER_USER_AGENT
        csrf = browser.get(f"{base}/api/session").cookies["csrftoken"]
        signed_in = browser.post(f"{base}/api/session", json={"username": user.username,
                                 "password": "correct horse battery"}, headers={"X-CSRFToken": csrf})  # fmt: skip
        assert signed_in.status_code == 200
        csrf = browser.cookies["csrftoken"]
        challenge = browser.get(f"{base}/api/drops/air/challenge").json()
        assert browser.get(f"{base}/api/drops/air").status_code == 200  # the drop is in the process cache

        database_through_proxy.down()
        body = {"altcha": solved(challenge), "fingerprint": "device-123456"}
        joined = browser.post(f"{base}/api/drops/air/queue", data=json.dumps(body),
                              headers={"X-CSRFToken": csrf, "Content-Type": "application/json"})  # fmt: skip
        assert (joined.status_code, joined.json()["ticket"]) == (201, 1)
        assert browser.get(f"{base}/api/drops/air/queue").json()["position"] == 1
        orders = browser.get(f"{base}/api/orders")  # needs the database: a clean 503, not a 500
        assert (orders.status_code, orders.json()["error"]["code"]) == (503, "service_unavailable")
        bought = browser.post(f"{base}/api/drops/air/purchase", json={}, headers={"X-CSRFToken": csrf})
        assert (bought.status_code, bought.json()["error"]["code"]) == (503, "service_unavailable")
        assert redis.get(f"{drop_tag(drop.pk)}:stock") == b"5"  # nothing was claimed by the failed purchase

        database_through_proxy.up()
        assert browser.get(f"{base}/api/orders").json() == {"orders": []}

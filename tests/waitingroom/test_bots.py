"""Bot mitigation on the join path: every rejection with its code, and nothing changed by it."""

import base64
import json
from dataclasses import dataclass
from datetime import timedelta
from unittest import mock
from urllib.error import URLError

import pytest
from django.test import Client
from django.utils import timezone

from inventory import services as inventory_services
from tests.conftest import BROWSER_USER_AGENT
from tests.factories import DropFactory, UserFactory
from waitingroom import pow, selectors, services
from waitingroom.fastpath import QueueFastPath
from waitingroom.redis_keys import queue_keys
from waitingroom.scripts import ReleaseResult
from waitingroom.selectors import EntryStatus

from .support import RealDjango, authorize, body_of, call, join_body, post, solved

pytestmark = pytest.mark.django_db
QUEUE = "/api/drops/air/queue"


@pytest.fixture(autouse=True)
def cheap_pow(settings):
    settings.POW_COST = 500
    selectors.drop_cache_clear()


@dataclass
class LeanAnswer:
    """The lean path's answer, read as the tests read Django's responses."""

    status_code: int
    body: dict
    headers: dict

    def json(self) -> dict:
        return self.body

    def __getitem__(self, name: str) -> str:
        return self.headers[name.lower()]


class Joins:
    """Joins over one of the two paths production serves them by: Django's view (reached when the lean path
    falls through) or the lean ASGI path in front of Django (``QueueFastPath``, with Django behind it)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.django = RealDjango()
        self.app = QueueFastPath(self.django)
        self.sent = 0
        self.falls_through = False  # the reCAPTCHA tests: Google's verify call is made on Django's path

    def __call__(self, client, body):
        if self.path == "django":
            return post(client, QUEUE, body)
        self.sent += 1
        selectors.drop_cache_clear()
        selectors.drop_cached_get(slug="air")  # as the first request of each second does, in a thread
        if client.cookies.get("csrftoken") is None:
            client.get("/api/session")
        shopper = {"session": client.cookies["sessionid"].value, "csrf": client.cookies["csrftoken"].value}
        user_agent, ip = client.defaults.get("HTTP_USER_AGENT", ""), client.defaults.get("REMOTE_ADDR", "127.0.0.1")
        status, data, headers = call(
            self.app, "POST", QUEUE, body=body_of(body), shopper=shopper, user_agent=user_agent, client_ip=ip
        )
        return LeanAnswer(status, data, headers)


@pytest.fixture(params=["django", "lean"])
def join(request):
    """Post a join over each path; on the lean one, nothing falls through to Django unless the test says so."""
    joins = Joins(request.param)
    yield joins
    if joins.path == "lean":
        assert len(joins.django.calls) == (joins.sent if joins.falls_through else 0)


@pytest.fixture
def live(redis):
    drop = DropFactory(slug="air", quantity=20, admission_rate=100)
    inventory_services.drop_arm(drop=drop)
    services.queue_start(drop=drop)
    return drop


def shopper_client(redis, drop, *, user_agent=BROWSER_USER_AGENT, age=timedelta(days=30), ip="10.0.0.1"):
    user = UserFactory(date_joined=timezone.now() - age)
    client = Client(HTTP_USER_AGENT=user_agent, REMOTE_ADDR=ip)
    client.force_login(user)
    authorize(redis, drop, user)
    return client, user


def entries(redis, drop):
    return redis.hlen(queue_keys(drop.pk).entries)


def error(response):
    return response.status_code, response.json()["error"]["code"]


# --- signals and the suspicion score ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("user_agent", "signals", "reasons"),
    [
        ("python-requests/2.32", {}, {"automation_user_agent": 1}),
        ("Mozilla/5.0 HeadlessChrome/156.0", {}, {"automation_user_agent": 1}),
        ("", {}, {"no_user_agent": 1, "no_languages": 1}),
        (BROWSER_USER_AGENT, {"webdriver": True}, {"webdriver": 1}),
        (BROWSER_USER_AGENT, {"headless": True, "languages": 0}, {"headless": 1, "no_languages": 1}),
    ],
)
def test_automation_signals_are_refused_and_counted(redis, live, user_agent, signals, reasons, join):
    client, _user = shopper_client(redis, live, user_agent=user_agent)
    if user_agent == "":
        signals = {"languages": 0}
    response = join(client, join_body(client, signals=signals))
    assert error(response) == (403, "bot_suspected")
    assert entries(redis, live) == 0
    assert selectors.bot_stats_get(drop_id=live.pk).blocked == reasons


def test_a_drop_can_park_suspects_in_a_queue_that_is_never_admitted(redis, live, join):
    live.bot_action = "park"
    live.save()
    honest, honest_user = shopper_client(redis, live)
    bot, bot_user = shopper_client(redis, live, user_agent="curl/8.5")
    bot_entry = join(bot, join_body(bot))
    assert bot_entry.status_code == 201
    assert (bot_entry.json()["status"], bot_entry.json()["ticket"]) == ("waiting", None)
    assert join(honest, join_body(honest)).json()["ticket"] == 1
    now = 1_800_000_000_000
    for second in range(5):
        services.queue_admit_batch(drop=live, now_ms=now + second * 1000, publish=False)
    assert selectors.entry_get(drop=live, shopper_id=honest_user.pk).status is EntryStatus.ADMITTED
    parked = selectors.entry_get(drop=live, shopper_id=bot_user.pk)
    assert (parked.status, parked.ticket, parked.eta_seconds) == (EntryStatus.WAITING, None, None)
    stats = selectors.bot_stats_get(drop_id=live.pk)
    assert (stats.flagged, stats.parked, stats.blocked) == (
        {"automation_user_agent": 1},
        {bot_user.pk: ["automation_user_agent"]},
        {},
    )
    # A merchandiser looks and lets this one in, at the end of the line.
    assert services.parked_release(drop=live, shopper_id=bot_user.pk) is ReleaseResult.RELEASED
    assert services.parked_release(drop=live, shopper_id=bot_user.pk) is ReleaseResult.NOT_PARKED
    assert selectors.entry_get(drop=live, shopper_id=bot_user.pk).ticket == 2
    services.queue_admit_batch(drop=live, now_ms=now + 6000, publish=False)
    assert selectors.entry_get(drop=live, shopper_id=bot_user.pk).status is EntryStatus.ADMITTED
    assert selectors.bot_stats_get(drop_id=live.pk).parked == {}


def test_too_many_accounts_on_one_device(redis, live, join):
    clients = [shopper_client(redis, live)[0] for _ in range(3)]
    body = {"fingerprint": "same-device-hash-123"}
    assert join(clients[0], join_body(clients[0], **body)).status_code == 201
    assert join(clients[1], join_body(clients[1], **body)).status_code == 201
    third = join(clients[2], join_body(clients[2], **body))
    assert error(third) == (403, "bot_suspected")
    assert entries(redis, live) == 2
    assert selectors.bot_stats_get(drop_id=live.pk).blocked == {"device_limit": 1}
    # the first account may still ask again: it is already queued on that device
    again = join(clients[0], join_body(clients[0], **body))
    assert (again.status_code, again.json()["ticket"]) == (200, 1)


def test_minimum_account_age(redis, live, join):
    live.min_account_age = 86_400
    live.save()
    young, _ = shopper_client(redis, live, age=timedelta(hours=2))
    old, _ = shopper_client(redis, live, age=timedelta(days=2))
    assert error(join(young, join_body(young))) == (403, "bot_suspected")
    assert join(old, join_body(old)).status_code == 201
    assert entries(redis, live) == 1
    assert selectors.bot_stats_get(drop_id=live.pk).blocked == {"account_too_new": 1}


def test_proof_of_work_gets_dearer_for_suspicious_requests(redis, live):
    plain, _ = shopper_client(redis, live)
    new, _ = shopper_client(redis, live, age=timedelta(minutes=5))
    scripted, _ = shopper_client(redis, live, user_agent="python-requests/2.32")
    costs = [c.get("/api/drops/air/challenge").json()["maxnumber"] for c in (plain, new, scripted)]
    assert costs == [500, 2000, 8000]


# --- proof-of-work edge cases ---------------------------------------------------------------------


def test_expired_proof_of_work_is_refused(redis, live, join):
    client, user = shopper_client(redis, live)
    with mock.patch("waitingroom.pow.timezone.now", return_value=timezone.now() - timedelta(minutes=10)):
        stale = pow.challenge_create(drop_id=live.pk, shopper_id=user.pk)
    response = join(client, {"altcha": solved(stale), "fingerprint": "fp-1234567890"})
    assert error(response) == (400, "pow_invalid")
    assert entries(redis, live) == 0


def test_spliced_salt_with_a_string_number_is_refused(redis, live, join):
    """The v1 splicing trick: cut the signed salt before a parameter and smuggle it in the number."""
    client, user = shopper_client(redis, live)
    challenge = pow.challenge_create(drop_id=live.pk, shopper_id=user.pk)
    payload = json.loads(base64.b64decode(solved(challenge)))
    head, tail = payload["salt"].split("&", 1)  # "<hex>?expires=..." | "drop=..&shopper=..&"
    forged = {**payload, "salt": head, "number": f"{tail}{payload['number']}"}
    response = join(
        client,
        {"altcha": base64.b64encode(json.dumps(forged).encode()).decode(), "fingerprint": "fp-1234567890"},
    )
    assert error(response) == (400, "pow_invalid")
    assert entries(redis, live) == 0


# --- reCAPTCHA (only Google's verify call is replaced) -----------------------------------------------


def google_says(**answer):
    body = mock.MagicMock()
    body.read.return_value = json.dumps(answer).encode()
    return mock.patch("django_recaptcha.client.recaptcha_request", return_value=body)


@pytest.fixture
def recaptcha_on(settings, join):
    settings.RECAPTCHA_PUBLIC_KEY = "site-key"
    settings.RECAPTCHA_PRIVATE_KEY = "secret-key"
    join.falls_through = True  # the lean path leaves reCAPTCHA to Django


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ({"success": True, "score": 0.9, "action": "join"}, (201, None)),
        ({"success": False, "error-codes": ["invalid-input-response"]}, (403, "bot_suspected")),
        ({"success": True, "score": 0.1, "action": "join"}, (403, "bot_suspected")),
        ({"success": True, "score": 0.9, "action": "login"}, (403, "bot_suspected")),
    ],
)
def test_recaptcha_verdicts(redis, live, recaptcha_on, answer, expected, join):
    client, _ = shopper_client(redis, live)
    with google_says(**answer) as verify:
        response = join(client, join_body(client, recaptcha="token-from-the-page"))
    assert b"response=token-from-the-page" in verify.call_args.args[0]
    if expected[1] is None:
        assert response.status_code == 201
        assert entries(redis, live) == 1
    else:
        assert error(response) == expected
        assert entries(redis, live) == 0


def test_recaptcha_token_is_required_when_configured(redis, live, recaptcha_on, join):
    client, _ = shopper_client(redis, live)
    assert error(join(client, join_body(client))) == (400, "invalid_request")


@pytest.mark.parametrize(("fail_open", "expected"), [(False, 503), (True, 201)])
def test_google_unreachable_fails_as_configured(redis, live, recaptcha_on, settings, fail_open, expected, join):
    settings.RECAPTCHA_FAIL_OPEN = fail_open
    client, _ = shopper_client(redis, live)
    with mock.patch("django_recaptcha.client.recaptcha_request", side_effect=URLError("unreachable")):
        response = join(client, join_body(client, recaptcha="token"))
    assert response.status_code == expected
    if not fail_open:
        assert response.json()["error"]["code"] == "recaptcha_unavailable"
        assert entries(redis, live) == 0


# --- rate limits ------------------------------------------------------------------------------------


def test_joins_are_rate_limited_per_shopper_with_retry_after(redis, live, settings, join):
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "queue-join": [("shopper", "3/m")]}
    client, _ = shopper_client(redis, live)
    codes = [join(client, {"bad": "body"}).status_code for _ in range(4)]
    assert codes == [400, 400, 400, 429]
    limited = join(client, {})
    assert limited.json()["error"]["code"] == "rate_limited"
    assert 1 <= int(limited["Retry-After"]) <= 60


def test_forwarded_for_is_ignored_without_trusted_proxies(redis, live, settings):
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "challenge": [("ip", "2/m")]}
    client, _ = shopper_client(redis, live)
    for spoof in ("1.1.1.1", "2.2.2.2"):
        assert client.get("/api/drops/air/challenge", HTTP_X_FORWARDED_FOR=spoof).status_code == 200
    assert client.get("/api/drops/air/challenge", HTTP_X_FORWARDED_FOR="3.3.3.3").status_code == 429


def test_the_trusted_proxy_names_the_client(redis, live, settings):
    settings.TRUSTED_PROXY_COUNT = 1
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "challenge": [("ip", "1/m")]}
    client, _ = shopper_client(redis, live)
    # the client wrote the left entry itself; our one proxy appended the real address
    first = client.get("/api/drops/air/challenge", HTTP_X_FORWARDED_FOR="9.9.9.9, 203.0.113.5")
    other = client.get("/api/drops/air/challenge", HTTP_X_FORWARDED_FOR="9.9.9.9, 203.0.113.6")
    again = client.get("/api/drops/air/challenge", HTTP_X_FORWARDED_FOR="8.8.8.8, 203.0.113.5")
    assert (first.status_code, other.status_code, again.status_code) == (200, 200, 429)


def test_sign_in_is_rate_limited_per_ip(settings):
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "sign-in": [("ip", "2/m")]}
    client = Client()
    bodies = [json.dumps({"username": "x", "password": "y"})] * 3
    codes = [client.post("/api/session", b, content_type="application/json").status_code for b in bodies]
    assert codes == [400, 400, 429]


def test_sign_up_is_rate_limited_per_ip(settings):
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "sign-up": [("ip", "1/m")]}
    client = Client()
    body = {"username": "newbie", "email": "n@example.com", "password": "long enough pw 9"}
    assert post(client, "/api/shoppers", body).status_code == 201
    second = post(Client(), "/api/shoppers", {**body, "username": "newbie2"})
    assert error(second) == (429, "rate_limited")


def test_automation_user_agents_are_found_whatever_their_case_and_length():
    from waitingroom.bots import CACHED_AGENT_LENGTH, suspicion_score

    def reasons(user_agent: str) -> list[str]:
        return suspicion_score(user_agent=user_agent, signals={}, account_age=None).reasons

    assert reasons("PYTHON-REQUESTS/2.32") == ["automation_user_agent"]
    assert reasons("Mozilla/5.0 (X11) HeadlessChrome/126.0") == ["automation_user_agent"]
    assert reasons("Googlebot/2.1") == ["automation_user_agent"]
    assert reasons(BROWSER_USER_AGENT) == []
    # Past the cached length the search still runs (not kept, so odd headers cannot fill memory)
    padding = "x" * CACHED_AGENT_LENGTH
    assert reasons(f"Mozilla/5.0 {padding} Selenium/4") == ["automation_user_agent"]
    assert reasons(f"Mozilla/5.0 {padding}") == []


def test_the_salt_parameters_are_read_as_parse_qs_reads_the_salts_we_issue(live):
    from urllib.parse import parse_qs

    from waitingroom.pow import _salt_params

    for shopper_id in (1, 42, 10**9):
        salt = pow.challenge_create(drop_id=live.pk, shopper_id=shopper_id)["salt"]
        assert _salt_params(salt) == parse_qs(salt.partition("?")[2], keep_blank_values=True)
    # Repeated names keep every value (the check then refuses anything but exactly one expiry)
    assert _salt_params("ab?expires=1&expires=2&drop=3&") == {"expires": ["1", "2"], "drop": ["3"]}
    assert _salt_params("no-parameters") == {}

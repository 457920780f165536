"""Request parsing under hostile input: every body, field, payload and cookie header gives an answer or a 4xx.

Hypothesis drives the parsers directly (flashsale.api.json_body/field, waitingroom.pow.pow_verify, the fast
path's body reading, JSON and cookies); the oversized-body tests go through Django, the fast path and a live
uvicorn.
"""

import asyncio
import base64
import json
import time

import pytest
import requests
from django.http import HttpRequest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from flashsale.api import MAX_JSON_BYTES, ApiError, field, json_body
from waitingroom import fastpath, pow
from waitingroom.errors import PowInvalid

HYPOTHESIS = settings(
    max_examples=300, derandomize=True, deadline=None, database=None, suppress_health_check=list(HealthCheck)
)

DEEP = b"[" * 16_000  # inside the size limit, far past Python's recursion limit
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


def _parsed(parse, *args, **kwargs):
    """Return (value, None) or (None, the ApiError raised); any other exception fails the test."""
    try:
        return parse(*args, **kwargs), None
    except ApiError as exc:
        return None, exc


def _request(body: bytes) -> HttpRequest:
    request = HttpRequest()
    request.method = "POST"
    request._body = body
    return request


# --- flashsale.api ---------------------------------------------------------------------------------


@HYPOTHESIS
@given(body=st.binary(max_size=2048) | st.text(max_size=2048).map(str.encode))
@example(body=DEEP)
@example(body=b'{"a": ' * 2500)
@example(body=b"\xff\xfe{\x00}\x00")
@example(body=b"NaN")
@example(body=b'"\\ud800"')
def test_json_body_answers_a_dict_or_400(body):
    data, error = _parsed(json_body, _request(body))
    if error is not None:
        assert (error.status, error.code) == (400, "invalid_request")
    else:
        assert isinstance(data, dict)


@HYPOTHESIS
@given(data=st.dictionaries(st.text(max_size=10), JSON_VALUES, max_size=6))
def test_a_json_object_round_trips(data):
    assert json_body(_request(json.dumps(data).encode())) == data


def test_a_body_over_the_limit_is_413():
    with pytest.raises(ApiError) as caught:
        json_body(_request(b" " * (MAX_JSON_BYTES + 1)))
    assert (caught.value.status, caught.value.code) == (413, "request_too_large")


@HYPOTHESIS
@given(
    data=st.dictionaries(st.sampled_from(["quantity", "username", "other"]), JSON_VALUES, max_size=3),
    kind=st.sampled_from([int, str, dict]),
    required=st.booleans(),
)
@example(data={"username": "ann\x00"}, kind=str, required=True)
@example(data={"quantity": True}, kind=int, required=True)
def test_field_answers_its_type_or_400(data, kind, required):
    for name in ("quantity", "username"):
        value, error = _parsed(field, data, name, kind, required=required, default="DEFAULT")
        if error is not None:
            assert (error.status, error.code) == (400, "invalid_request")
            continue
        if value == "DEFAULT":
            assert not required
            assert data.get(name) is None
            continue
        assert isinstance(value, kind)
        assert not isinstance(value, bool) or kind is not int
        assert not (kind is str and "\x00" in value)  # PostgreSQL cannot store it


# --- waitingroom.pow -------------------------------------------------------------------------------


def _b64(value) -> str:
    raw = value if isinstance(value, bytes) else json.dumps(value).encode()
    return base64.b64encode(raw).decode()


SALTS = st.builds(
    lambda base, params: base + "?" + "&".join(f"{k}={v}" for k, v in params),
    st.text(alphabet="abcdef0123456789", max_size=8),
    st.lists(st.tuples(st.sampled_from(["expires", "drop", "shopper", "x"]), st.text(max_size=12)), max_size=5),
)
PAYLOADS = (
    st.text(max_size=300)
    | st.binary(max_size=300).map(_b64)
    | st.fixed_dictionaries(
        {"salt": SALTS | JSON_VALUES, "signature": st.text(max_size=20) | JSON_VALUES},
        optional={
            "number": JSON_VALUES,
            "algorithm": st.sampled_from(["SHA-256", "SHA-1", "MD5", ""]) | JSON_VALUES,
            "challenge": JSON_VALUES,
        },
    ).map(_b64)
)


@pytest.mark.django_db
@HYPOTHESIS
@given(payload=PAYLOADS)
@example(payload=_b64({"salt": "a?expires=\u00b2&drop=1&shopper=2", "signature": "s", "number": 1}))
@example(payload=_b64({"salt": "a?expires=" + "9" * 5000 + "&drop=1&shopper=2", "signature": "s", "number": 1}))
@example(payload=_b64(DEEP))
@example(payload=_b64({"salt": "a?expires=99999999999&drop=1&shopper=2", "signature": "s", "number": 1}))
@example(payload="\u00e9t\u00e9")
def test_pow_verify_accepts_nothing_it_did_not_sign(payload):
    with pytest.raises(PowInvalid):
        pow.pow_verify(payload=payload, drop_id=1, shopper_id=2)


@pytest.mark.django_db
def test_a_solved_challenge_verifies_only_for_its_shopper_and_drop(settings):
    from tests.waitingroom.support import solved

    settings.POW_COST = 500
    payload = solved(pow.challenge_create(drop_id=1, shopper_id=2))
    assert pow.pow_verify(payload=payload, drop_id=1, shopper_id=2).signature
    for drop_id, shopper_id in ((1, 3), (2, 2), (2, 3)):
        with pytest.raises(PowInvalid):
            pow.pow_verify(payload=payload, drop_id=drop_id, shopper_id=shopper_id)


# --- the fast path's body, JSON and cookies --------------------------------------------------------


def _receiver(chunks: list[bytes], *, then_disconnect: bool = True):
    messages = [
        {"type": "http.request", "body": chunk, "more_body": i < len(chunks) - 1} for i, chunk in enumerate(chunks)
    ]

    async def receive():
        if messages:
            return messages.pop(0)
        if then_disconnect:
            return {"type": "http.disconnect"}
        await asyncio.sleep(3600)  # a server waits for a body chunk that never comes

    return receive, messages


@HYPOTHESIS
@given(chunks=st.lists(st.binary(max_size=6000), min_size=1, max_size=8))
def test_fast_path_reads_a_body_in_any_chunking_and_hands_django_exactly_the_rest(chunks):
    async def run():
        receive, left = _receiver(chunks, then_disconnect=False)
        body, larger, more = await fastpath._read_body(receive)
        total = b"".join(chunks)
        assert larger == (len(total) > MAX_JSON_BYTES)
        assert more == bool(left)
        replay = fastpath._replay(body, receive, more)
        seen, message = b"", {"more_body": True}
        while message["more_body"]:
            message = await asyncio.wait_for(replay(), 1)  # a promise of more that never comes would hang here
            seen += message["body"]
        assert seen == total

    asyncio.run(run())


@HYPOTHESIS
@given(body=st.binary(max_size=2048) | st.text(max_size=2048).map(str.encode))
@example(body=DEEP)
def test_fast_path_json_answers_a_dict_or_400(body):
    data, error = _parsed(fastpath._json, body)
    if error is not None:
        assert (error.status, error.code) == (400, "invalid_request")
    else:
        assert isinstance(data, dict)


@HYPOTHESIS
@given(header=st.text(max_size=300))
@example(header='sessionid="\\')
@example(header="a=b; =c; ;;; sessionid=\x00")
def test_fast_path_cookies_never_raise(header):
    cookies = fastpath.parse_cookie(header)  # the fast path reads cookies as Django does
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in cookies.items())


# --- oversized bodies, end to end ------------------------------------------------------------------

JSON_POSTS = [
    "/api/session",
    "/api/shoppers",
    "/api/drops/{slug}/authorization",
    "/api/drops/{slug}/queue",
    "/api/drops/{slug}/purchase",
]


@pytest.fixture
def shopper_client(client, drop):
    from .conftest import veteran

    client.force_login(veteran())
    return client


@pytest.mark.parametrize("path", JSON_POSTS)
def test_a_body_just_over_16_kib_is_413_json_everywhere(shopper_client, drop, path):
    body = json.dumps({"pad": "x" * MAX_JSON_BYTES}).encode()
    response = shopper_client.post(path.format(slug=drop.slug), body, content_type="application/json")
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"


def test_a_body_of_megabytes_is_413_json(shopper_client, drop):
    body = b'{"pad": "' + b"x" * 3_000_000 + b'"}'
    response = shopper_client.post(f"/api/drops/{drop.slug}/purchase", body, content_type="application/json")
    assert (response.status_code, response["Content-Type"]) == (413, "application/json")


@pytest.mark.slow
def test_the_live_server_answers_oversized_and_deep_bodies_on_the_fast_path(
    transactional_db, live_server_url, cheap_pow
):
    """Through uvicorn and the real application: the fast path hands Django a whole oversized body."""
    from inventory import services as inventory_services
    from tests.factories import DropFactory

    from .conftest import csrf_pair, session_for, veteran

    drop = DropFactory(slug="big")
    inventory_services.drop_arm(drop=drop)
    http = requests.Session()
    token = csrf_pair()
    http.cookies.set("csrftoken", token)
    http.cookies.set("sessionid", session_for(veteran()))
    url = f"{live_server_url}/api/drops/big/queue"
    headers = {"X-CSRFToken": token, "Content-Type": "application/json"}
    requests_ = [
        (json.dumps({"altcha": "x" * 20_000, "fingerprint": "fp-1234567890"}).encode(), 413, "request_too_large"),
        (DEEP, 400, "invalid_request"),
        (b"{" * 10 + b"\xff", 400, "invalid_request"),
    ]
    with http:
        for body, status, code in requests_:
            http.get(url)  # the first request of a second reads the drop into the fast path's cache
            started = time.monotonic()
            response = http.post(url, data=body, headers=headers, timeout=10)
            assert (response.status_code, response.json()["error"]["code"]) == (status, code)
            assert time.monotonic() - started < 5


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/session", {"username": "ann\x00", "password": "x"}),
        ("/api/shoppers", {"username": "bob", "email": "b\x00@example.com", "password": "long enough pw 9"}),
    ],
)
def test_nul_in_a_string_field_is_400_on_every_database(client, path, body):
    """PostgreSQL refuses NUL in text; before the parser refused it, this answered 503 there."""
    response = client.post(path, json.dumps(body), content_type="application/json")
    assert (response.status_code, response.json()["error"]["code"]) == (400, "invalid_request")

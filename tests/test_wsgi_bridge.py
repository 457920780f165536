"""Django's HTTP under uvicorn through flashsale.wsgi_bridge: the same answers as Django gives, one thread hop."""

import json
import threading
import urllib.error
import urllib.request

import pytest

from flashsale.wsgi_bridge import WsgiBridge, environ_build
from tests.conftest import serving_asgi


def scope(**extra):
    return {
        "type": "http",
        "method": "POST",
        "path": "/api/session",
        "root_path": "",
        "query_string": b"next=%2Forders%2F&x=1",
        "http_version": "1.1",
        "scheme": "https",
        "server": ("shop.example", 443),
        "client": ("203.0.113.9", 50000),
        "headers": [
            (b"host", b"shop.example"),
            (b"content-type", b"application/json"),
            (b"content-length", b"2"),
            (b"cookie", b"sessionid=abc"),
            (b"cookie", b"csrftoken=def"),
            (b"accept", b"text/html"),
            (b"accept", b"application/json"),
        ],
        **extra,
    }


def test_the_environ_carries_what_django_reads_from_a_wsgi_server():
    environ = environ_build(scope(), b"{}")

    assert environ["REQUEST_METHOD"] == "POST"
    assert environ["PATH_INFO"] == "/api/session"
    assert environ["QUERY_STRING"] == "next=%2Forders%2F&x=1"
    assert environ["wsgi.url_scheme"] == "https"
    assert (environ["SERVER_NAME"], environ["SERVER_PORT"]) == ("shop.example", "443")
    assert environ["REMOTE_ADDR"] == "203.0.113.9"
    assert (environ["CONTENT_TYPE"], environ["CONTENT_LENGTH"]) == ("application/json", "2")
    assert environ["wsgi.input"].read() == b"{}"
    # Repeated headers are joined as a proxy would: cookies with "; ", the rest with ","
    assert environ["HTTP_COOKIE"] == "sessionid=abc; csrftoken=def"
    assert environ["HTTP_ACCEPT"] == "text/html,application/json"


def test_a_root_path_becomes_the_script_name():
    environ = environ_build(scope(root_path="/shop", path="/shop/api/session"), b"")

    assert (environ["SCRIPT_NAME"], environ["PATH_INFO"]) == ("/shop", "/api/session")


@pytest.fixture
def live_url(transactional_db, settings):
    settings.ALLOWED_HOSTS = ["127.0.0.1"]
    with serving_asgi() as url:
        yield url


def call(url: str, method: str = "GET", body: bytes | None = None, headers: dict | None = None):
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - the test's own server
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read()


def test_django_answers_through_the_bridge_with_its_middleware(live_url):
    status, headers, body = call(f"{live_url}/api/session")

    assert status == 200
    assert json.loads(body)["authenticated"] is False
    # Django's middleware ran: the CSRF cookie is set, SecurityMiddleware's headers are there
    assert "csrftoken=" in headers.get("Set-Cookie", "")
    assert headers.get("X-Content-Type-Options") == "nosniff"
    assert headers.get("X-Frame-Options") == "DENY"


def test_a_body_larger_than_django_takes_is_refused_with_the_api_error(live_url, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    big = b"{" + b" " * 200_000 + b"}"

    status, headers, body = call(f"{live_url}/api/session", "POST", big, {"Content-Type": "application/json"})

    assert status == 413
    assert headers["content-type"] == "application/json"
    assert json.loads(body)["error"]["code"] == "request_too_large"


def test_requests_beyond_the_threads_wait_instead_of_failing(live_url):
    # One thread: twenty requests at once are served one after another, every one of them answered
    from concurrent.futures import ThreadPoolExecutor

    from flashsale import asgi

    bridge = asgi.application.application_mapping["http"].app
    assert isinstance(bridge, WsgiBridge)
    original = bridge.executor
    bridge.executor = ThreadPoolExecutor(max_workers=1)
    try:
        results = []
        threads = [threading.Thread(target=lambda: results.append(call(f"{live_url}/healthz")[0])) for _ in range(20)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
    finally:
        bridge.executor.shutdown(wait=True)
        bridge.executor = original
    assert results == [200] * 20


def test_a_request_whose_body_is_cut_off_by_a_disconnect_never_reaches_django():
    # Given a purchase whose client goes away before its body arrives (Django would read an empty body as {})
    from asgiref.sync import async_to_sync

    calls, sent = [], []
    messages = [{"type": "http.request", "body": b"", "more_body": True}, {"type": "http.disconnect"}]

    def wsgi_app(environ, start_response):
        calls.append(environ["PATH_INFO"])
        start_response("201 Created", [])
        return [b"{}"]

    async def receive():
        return messages.pop(0)

    async def send(message):
        sent.append(message)

    # When the bridge reads it
    async_to_sync(WsgiBridge(wsgi_app, threads=1))(scope(path="/api/drops/d/purchase"), receive, send)

    # Then the view never runs and nothing is answered
    assert calls == []
    assert sent == []


def test_header_names_with_underscores_are_dropped_as_django_does():
    # Given a request whose client sends X_Forwarded_For beside the proxy's X-Forwarded-For
    headers = [(b"x-forwarded-for", b"198.51.100.1"), (b"x_forwarded_for", b"10.0.0.1"), (b"x_custom", b"1")]
    request_scope = scope(headers=[*scope()["headers"], *headers])

    # When the bridge builds the environ
    environ = environ_build(request_scope, b"{}")

    # Then only the real header is there: the underscore one cannot pass for it
    assert environ["HTTP_X_FORWARDED_FOR"] == "198.51.100.1"
    assert "HTTP_X_CUSTOM" not in environ

"""/healthz: 200 when the database and Redis answer, 503 naming the failing part."""

import json

import pytest
from django.test import override_settings

pytestmark = pytest.mark.django_db


def test_healthz_ok(client):
    response = client.get("/healthz")
    assert (response.status_code, response.json()) == (200, {"status": "ok"})


DEAD_REDIS = {
    "BACKEND": "django_redis.cache.RedisCache",
    "LOCATION": "redis://127.0.0.1:1/0",
    "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.2, "SOCKET_TIMEOUT": 0.2},
}


def test_healthz_names_redis_when_it_is_down(client):
    with override_settings(CACHES={"default": DEAD_REDIS, "sale": DEAD_REDIS}):
        response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json() == {"status": "unavailable", "failing": {"redis": "unavailable"}}


def test_healthz_names_the_cache_when_its_own_redis_is_down(client, settings):
    with override_settings(CACHES={**settings.CACHES, "default": DEAD_REDIS}):
        response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json() == {"status": "unavailable", "failing": {"cache": "unavailable"}}


def test_healthz_refuses_post(client):
    assert client.post("/healthz").status_code == 405


def test_migrations_are_complete():
    from io import StringIO

    from django.core.management import call_command

    call_command("makemigrations", "--check", "--dry-run", stdout=StringIO())


def test_a_redis_outage_on_the_api_is_a_503_not_a_500(client, make_drop):
    make_drop(slug="air")
    with override_settings(
        CACHES={"default": DEAD_REDIS, "sale": DEAD_REDIS}, SESSION_ENGINE="django.contrib.sessions.backends.db"
    ):
        response = client.get("/api/drops")
    assert (response.status_code, response.json()["error"]["code"]) == (503, "service_unavailable")
    assert response["Retry-After"] == "2"


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("get", "/api/nothing-here", 404, "not_found"),
        ("get", "/api/drops/%C2%84", 404, "not_found"),
        ("put", "/api/drops", 405, "method_not_allowed"),
        ("delete", "/api/orders", 405, "method_not_allowed"),
    ],
)
def test_django_answers_under_api_keep_the_json_error_shape(client, method, path, status, code):
    response = getattr(client, method)(path)
    assert (response.status_code, response.json()["error"]["code"]) == (status, code)


def test_multipart_without_a_boundary_is_a_json_400(client, shopper, make_drop):
    make_drop(slug="air")
    client.force_login(shopper)
    response = client.post("/api/drops/air/queue", b"--x", content_type="multipart/form-data")
    assert response.status_code in (400, 403)
    assert response["Content-Type"] == "application/json"


def test_metrics_answer_get_only(client):
    assert client.post("/metrics").status_code == 405


def test_a_drop_deleted_while_still_cached_is_a_404(client, make_drop):
    from inventory.models import Drop
    from waitingroom.selectors import drop_cached_get

    drop = make_drop(slug="gone")
    drop_cached_get(slug="gone")
    Drop.objects.filter(pk=drop.pk).update(slug="renamed")  # as good as gone for this slug, yet cached
    drop.orders.all().delete()
    Drop.objects.filter(pk=drop.pk).delete()
    response = client.get("/api/drops/gone")
    assert (response.status_code, response.json()["error"]["code"]) == (404, "not_found")


def test_a_host_outside_allowed_hosts_is_a_json_400_through_the_real_application(make_drop):
    from asgiref.sync import async_to_sync
    from channels.testing import HttpCommunicator

    from flashsale.asgi import application

    make_drop(slug="air")
    communicator = HttpCommunicator(application, "GET", "/api/drops/air/queue", headers=[(b"host", b"evil.example")])
    response = async_to_sync(communicator.get_response)()
    assert response["status"] == 400
    assert json.loads(response["body"])["error"]["code"] == "invalid_request"

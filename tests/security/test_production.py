"""Production settings and the admin: check --deploy clean, secrets only from the environment, secure cookies
and HSTS, admin for staff only, and merchandisers never shown a payment secret."""

import importlib
import os
import subprocess
import sys

import pytest
from django.conf import settings as django_settings
from django.contrib.auth.models import Group
from django.test import Client

from payments.models import Authorization
from tests.payments.conftest import hold, three_d_secure_method

from .conftest import veteran

PRODUCTION_ENV = {
    "DJANGO_SETTINGS_MODULE": "flashsale.settings.production",
    "DJANGO_SECRET_KEY": "x7#kq" * 12,
    "ALLOWED_HOSTS": "shop.example",
    "STRIPE_SECRET_KEY": "sk_test_not_a_real_key",
    "STRIPE_PUBLISHABLE_KEY": "pk_test_not_a_real_key",
    "STRIPE_API_BASE": "http://127.0.0.1:9",  # never reached: nothing here calls Stripe
    "DATABASE_URL": "sqlite:////tmp/flashsale-production-check.sqlite3",
    "REDIS_URL": "redis://127.0.0.1:6379/15",
}
SECURITY_SETTINGS = [
    "SESSION_COOKIE_SECURE",
    "SESSION_COOKIE_HTTPONLY",
    "SESSION_COOKIE_SAMESITE",
    "CSRF_COOKIE_SECURE",
    "CSRF_COOKIE_SAMESITE",
    "SECURE_SSL_REDIRECT",
    "SECURE_PROXY_SSL_HEADER",
    "SECURE_HSTS_SECONDS",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS",
    "SECURE_HSTS_PRELOAD",
    "SECURE_CONTENT_TYPE_NOSNIFF",
    "DEBUG",
]


def _clean_environ() -> dict:
    """This process's environment without anything a deploy would set (make exports REDIS_URL, say)."""
    names = ("DJANGO_", "STRIPE_", "ALLOWED_HOSTS", "DATABASE_URL", "REDIS_URL", "TEST_REDIS_URL")
    return {k: v for k, v in os.environ.items() if not k.startswith(names)}


def _manage(*args: str, env: dict) -> subprocess.CompletedProcess:
    clean = _clean_environ()
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=django_settings.BASE_DIR,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.slow
def test_check_deploy_is_clean_with_production_settings():
    result = _manage("check", "--deploy", "--fail-level", "WARNING", env=PRODUCTION_ENV)
    assert result.returncode == 0, result.stderr + result.stdout
    assert "System check identified no issues" in result.stdout


@pytest.mark.slow
@pytest.mark.parametrize(
    "missing",
    ["DJANGO_SECRET_KEY", "ALLOWED_HOSTS", "STRIPE_SECRET_KEY", "STRIPE_PUBLISHABLE_KEY", "DATABASE_URL", "REDIS_URL"],
)
def test_production_does_not_start_without_its_secrets(missing):
    env = {k: v for k, v in PRODUCTION_ENV.items() if k != missing}
    result = _manage("check", env=env)
    assert result.returncode != 0
    assert missing in result.stderr


def _production_values(monkeypatch) -> dict:
    for name, value in PRODUCTION_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("DJANGO_DEBUG", raising=False)
    sys.modules.pop("flashsale.settings.production", None)
    module = importlib.import_module("flashsale.settings.production")
    sys.modules.pop("flashsale.settings.production", None)
    return {name: getattr(module, name) for name in (*SECURITY_SETTINGS, "METRICS_ALLOWED_NETWORKS")}


@pytest.mark.django_db
def test_production_cookies_are_secure_httponly_samesite_and_hsts_is_sent(monkeypatch, settings):
    for name, value in _production_values(monkeypatch).items():
        setattr(settings, name, value)
    user = veteran(username="ann")
    client = Client()

    plain = client.get("/api/session")
    assert (plain.status_code, plain["Location"]) == (301, "https://testserver/api/session")
    session = client.get("/api/session", secure=True)
    assert session["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains; preload"
    assert session["X-Content-Type-Options"] == "nosniff"
    csrf = session.cookies["csrftoken"]
    assert (csrf["secure"], csrf["samesite"]) == (True, "Lax")
    signed_in = client.post(
        "/api/session",
        {"username": user.username, "password": "correct horse battery"},
        content_type="application/json",
        secure=True,
    )
    assert signed_in.status_code == 200
    cookie = signed_in.cookies["sessionid"]
    assert (cookie["secure"], cookie["httponly"], cookie["samesite"]) == (True, True, "Lax")


@pytest.mark.slow
@pytest.mark.parametrize("entry_point", ["flashsale.asgi", "flashsale.wsgi", "flashsale.celery"])
def test_what_a_deploy_runs_gets_the_production_settings_unless_it_opts_out(entry_point):
    """Without DJANGO_SETTINGS_MODULE the server and the workers take the production settings: with nothing
    configured they refuse to start and say what is missing; configured, they start, DEBUG off."""
    clean = _clean_environ()
    probe = f"import {entry_point}; from django.conf import settings; print(settings.SETTINGS_MODULE, settings.DEBUG)"

    def run(env: dict) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", probe], cwd=django_settings.BASE_DIR, env=env,
                              capture_output=True, text=True, timeout=60, check=False)  # fmt: skip

    unconfigured = run(clean)
    assert unconfigured.returncode != 0
    assert "DATABASE_URL" in unconfigured.stderr
    configured = run({**clean, **{k: v for k, v in PRODUCTION_ENV.items() if k != "DJANGO_SETTINGS_MODULE"}})
    assert configured.returncode == 0, configured.stderr
    assert configured.stdout.split() == ["flashsale.settings.production", "False"]


def test_production_serves_metrics_to_nobody_unless_told_to(monkeypatch):
    assert _production_values(monkeypatch)["METRICS_ALLOWED_NETWORKS"] == []


# --- the admin -------------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/admin/", "/admin/inventory/drop/", "/admin/payments/authorization/"])
def test_the_admin_is_for_staff_only(path):
    shopper = veteran()
    anonymous = Client().get(path)
    assert anonymous.status_code == 302
    assert anonymous["Location"].startswith("/admin/login/")
    client = Client()
    client.force_login(shopper)
    signed_in = client.get(path)
    assert signed_in.status_code == 302
    assert signed_in["Location"].startswith("/admin/login/")
    refused = Client().post("/admin/login/", {"username": shopper.username, "password": "correct horse battery"})
    assert refused.status_code == 200  # the form again, with its error: a shopper cannot sign in to the admin


@pytest.fixture
def holds(make_drop, stripe_settings):
    """Two card holds on one drop: a plain one and one waiting for 3-D Secure (whose client secret we keep)."""
    from payments.stripe_client import stripe_client

    drop = make_drop()
    plain, three_ds = Client(), Client()
    plain.force_login(veteran())
    three_ds.force_login(veteran())
    hold(plain, drop)
    hold(three_ds, drop, three_d_secure_method(stripe_client()))
    return drop, three_ds.get(f"/api/drops/{drop.slug}/authorization").json()["client_secret"]


def _staff(*groups: str) -> Client:
    user = veteran(is_staff=True)
    user.groups.add(*(Group.objects.get(name=name) for name in groups))
    client = Client()
    client.force_login(user)
    return client


def _secrets(drop, client_secret: str) -> list[str]:
    fingerprints = list(Authorization.objects.exclude(card_fingerprint="").values_list("card_fingerprint", flat=True))
    assert fingerprints
    return [client_secret, "_secret_", django_settings.STRIPE_SECRET_KEY, *fingerprints]


def _admin_pages(drop) -> list[str]:
    from waitingroom.models import DropQueue

    authorization = Authorization.objects.filter(drop=drop).first()
    queue = DropQueue.objects.get(pk=drop.pk)
    return [
        "/admin/",
        "/admin/inventory/drop/",
        f"/admin/inventory/drop/{drop.pk}/change/",
        "/admin/inventory/order/",
        "/admin/inventory/product/",
        "/admin/waitingroom/dropqueue/",
        f"/admin/waitingroom/dropqueue/{queue.pk}/change/",
        f"/admin/waitingroom/dropqueue/{queue.pk}/dashboard/",
        f"/admin/waitingroom/dropqueue/{queue.pk}/dashboard.json",
        "/admin/payments/authorization/",
        f"/admin/payments/authorization/{authorization.pk}/change/",
        "/admin/payments/stripecustomer/",
        "/admin/payments/refund/",
    ]


@pytest.mark.django_db
def test_merchandisers_open_no_page_that_shows_a_payment_secret(holds):
    drop, client_secret = holds
    merchandiser = _staff("Merchandisers")
    secrets = _secrets(drop, client_secret)
    opened = 0
    for path in _admin_pages(drop):
        response = merchandiser.get(path)
        if response.status_code != 200:
            assert response.status_code in (302, 403, 404), path
            continue
        opened += 1
        page = response.content.decode()
        for secret in secrets:
            assert secret not in page, (path, secret)
    assert opened >= 8
    assert merchandiser.get("/admin/payments/authorization/").status_code == 403
    assert merchandiser.get("/admin/payments/stripecustomer/").status_code == 403


@pytest.mark.django_db
def test_payment_operators_see_holds_without_client_secrets(holds):
    drop, client_secret = holds
    operator = _staff("Merchandisers", "Payment operators")
    for path in _admin_pages(drop):
        page = operator.get(path).content.decode()
        assert client_secret not in page, path
        assert "_secret_" not in page, path
        assert django_settings.STRIPE_SECRET_KEY not in page, path


@pytest.mark.django_db
def test_payment_operators_are_not_shown_card_fingerprints(holds):
    drop, _client_secret = holds
    operator = _staff("Merchandisers", "Payment operators")
    fingerprints = _secrets(drop, "unused")[3:]
    for path in _admin_pages(drop):
        page = operator.get(path).content.decode()
        for fingerprint in fingerprints:
            assert fingerprint not in page, (path, fingerprint)

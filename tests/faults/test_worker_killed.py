"""A Celery worker killed in the middle of the admission ticks: nothing is admitted twice, and the work
goes on at the drop's rate once a worker runs again. Real worker and beat processes, real broker."""

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from inventory import services as inventory_services
from tests.factories import DropFactory
from waitingroom import selectors, services
from waitingroom.redis_keys import queue_keys

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


def database_url() -> str:
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    return f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def start_celery(
    tmp_path, redis_prefix, *, name: str, extra_env=None, beat: bool = True, queues: str = ""
) -> subprocess.Popen:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "flashsale.settings.test",
        "DATABASE_URL": database_url(),
        "TEST_REDIS_URL": settings.REDIS_URL,
        "TEST_CACHE_URL": settings.CACHE_URL,
        "FLASHSALE_TEST_PREFIX": redis_prefix,
        **(extra_env or {}),
    }
    command = [sys.executable, "-m", "celery", "-A", "flashsale", "worker", "--pool", "solo", "--loglevel", "WARNING",
               "-n", f"{name}@%h"]  # fmt: skip
    if queues:
        command += ["-Q", queues]
    if beat:
        command += ["--beat", "--schedule", str(tmp_path / f"beat-{name}")]
    # A process group of its own: the embedded beat is a child process, and a kill must take it too.
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=open(tmp_path / f"{name}.log", "wb"),
                            stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip


def kill_group(process: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)
    process.wait(timeout=20)


def served(drop) -> int:
    return selectors.queue_stats_get(drop_id=drop.pk).serving


def wait_until(predicate, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_a_killed_worker_admits_nobody_twice_and_the_work_goes_on(tmp_path, redis_prefix, redis):
    drop = DropFactory(quantity=10_000, admission_rate=200, checkout_window=600)
    inventory_services.drop_arm(drop=drop)
    services.queue_start(drop=drop)
    for shopper in range(1, 3001):
        services.ticket_issue(drop=drop, shopper_id=shopper, require_authorization=False)

    worker = start_celery(tmp_path, redis_prefix, name="first")
    try:
        assert wait_until(lambda: served(drop) >= 100, 30), (tmp_path / "first.log").read_text()
        kill_group(worker)  # mid-run: ticks were being sent every second
    finally:
        kill_group(worker)
    at_kill = served(drop)
    time.sleep(1.5)  # nobody ticks while no worker runs
    assert served(drop) == at_kill

    worker = start_celery(tmp_path, redis_prefix, name="second")
    try:
        assert wait_until(lambda: served(drop) >= at_kill + 300, 30), (tmp_path / "second.log").read_text()
    finally:
        kill_group(worker, signal.SIGTERM)

    keys = queue_keys(drop.pk)
    admitted = redis.zrange(keys.admitted, 0, -1)
    final = served(drop)
    assert len(admitted) == len(set(admitted)) == final  # every ticket up to serving admitted exactly once
    assert {int(s) for s in admitted} == set(range(1, final + 1))


def test_a_worker_killed_in_the_cancellation_pipeline_cancels_nothing_twice_and_finishes(
    tmp_path, redis_prefix, stripe_proxy, localstripe
):
    from celery import Celery
    from django.test import Client

    from inventory.models import Drop
    from payments.models import Authorization, AuthorizationStatus
    from payments.stripe_client import stripe_client
    from tests.factories import UserFactory
    from tests.payments.conftest import hold

    drop = DropFactory(quantity=1, per_customer_limit=1, max_accounts_per_card=100)
    inventory_services.drop_arm(drop=drop)
    for _ in range(24):
        client = Client()
        client.force_login(UserFactory())
        hold(client, drop)
    Drop.objects.filter(pk=drop.pk).update(ends_at=drop.starts_at)  # over: every hold must be released
    env = {
        "STRIPE_API_BASE": stripe_proxy.url, "STRIPE_SECRET_KEY": "sk_test_localstripe", "STRIPE_LOCALSTRIPE": "1",
        "STRIPE_RATE_LIMIT": "6", "STRIPE_RATE_BURST": "3", "PAYMENTS_CANCEL_BATCH_SECONDS": "2",
    }  # fmt: skip
    sender = Celery(broker=settings.REDIS_URL, set_as_current=False)  # the project app stays current
    sender.conf.broker_transport_options = {"global_keyprefix": f"{redis_prefix}:celery:"}

    def canceled() -> int:
        return Authorization.objects.filter(drop=drop, status=AuthorizationStatus.CANCELED).count()

    worker = start_celery(tmp_path, redis_prefix, name="payments-first", extra_env=env, beat=False)
    try:
        sender.send_task("payments.tasks.drop_authorizations_release", args=[drop.pk])
        assert wait_until(lambda: canceled() >= 4, 30), (tmp_path / "payments-first.log").read_text()
        kill_group(worker)
    finally:
        kill_group(worker)
    assert canceled() < 24

    worker = start_celery(tmp_path, redis_prefix, name="payments-second", extra_env=env, beat=False)
    try:
        # What the beat's cancel_due does every 30 s; the dead run's lock expires after its budget.
        deadline = time.monotonic() + 60
        while canceled() < 24 and time.monotonic() < deadline:
            sender.send_task("payments.tasks.drop_authorizations_release", args=[drop.pk])
            wait_until(lambda: canceled() == 24, 5)
        assert canceled() == 24, (tmp_path / "payments-second.log").read_text()
    finally:
        kill_group(worker, signal.SIGTERM)

    keys = stripe_proxy.keys_for("/cancel")
    repeats = {key: keys.count(key) for key in set(keys) if keys.count(key) > 1}
    assert len(set(keys)) == 24
    assert len(repeats) <= 1  # at most the call the kill cut short was made again, with the same key
    assert all(n == 2 for n in repeats.values())
    for authorization in Authorization.objects.filter(drop=drop):
        intent = stripe_client().v1.payment_intents.retrieve(authorization.payment_intent_id)
        assert intent.status == "canceled"


def test_a_worker_killed_while_placing_holds_places_none_twice_and_loses_none(
    tmp_path, redis_prefix, stripe_proxy, localstripe
):
    from celery import Celery
    from django.test import Client

    from payments.models import Authorization, AuthorizationStatus
    from payments.stripe_client import idempotency_key, stripe_client
    from tests.factories import UserFactory
    from tests.payments.conftest import authorize

    # Given twelve shoppers in line with their cards given, and Stripe answering each hold a second late
    drop = DropFactory(quantity=50, admission_rate=10, max_accounts_per_card=100)
    inventory_services.drop_arm(drop=drop)
    services.queue_start(drop=drop)
    for _ in range(12):
        client = Client()
        client.force_login(UserFactory())
        assert authorize(client, drop).status_code == 202
        services.ticket_issue(drop=drop, shopper_id=int(client.session["_auth_user_id"]))
    stripe_proxy.mode, stripe_proxy.delay, stripe_proxy.slow_paths = "slow", 1.0, ("/v1/payment_intents",)
    env = {
        "STRIPE_API_BASE": stripe_proxy.url, "STRIPE_SECRET_KEY": "sk_test_localstripe", "STRIPE_LOCALSTRIPE": "1",
        "HOLDS_RUN_SECONDS": "3", "HOLDS_PLACING_STALE_SECONDS": "3", "STRIPE_TIMEOUT": "2",
    }  # fmt: skip
    sender = Celery(broker=settings.REDIS_URL, set_as_current=False)
    sender.conf.broker_transport_options = {"global_keyprefix": f"{redis_prefix}:celery:"}

    def placed() -> int:
        return Authorization.objects.filter(drop=drop, status=AuthorizationStatus.AUTHORIZED).count()

    def beat_until(predicate, seconds: float) -> bool:
        """Send the scheduler's task every second, as beat does, until ``predicate`` holds."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            sender.send_task("flashsale.checkout.tasks.holds_place_all", queue="holds")
            if wait_until(predicate, 1):
                return True
        return False

    # When the worker placing them is killed while a hold's call is on its way to Stripe
    worker = start_celery(tmp_path, redis_prefix, name="holds-first", extra_env=env, beat=False)
    try:
        assert beat_until(lambda: placed() >= 3, 30), (tmp_path / "holds-first.log").read_text()
        assert wait_until(lambda: len(stripe_proxy.keys_for("/v1/payment_intents")) > placed(), 5)
        kill_group(worker)  # the next hold's request is in flight: sent, not yet answered
    finally:
        kill_group(worker)
    assert placed() < 12

    # Then another worker finishes the work, taking over the dead run's claim once it is stale
    worker = start_celery(tmp_path, redis_prefix, name="holds-second", extra_env=env, beat=False)
    try:
        assert beat_until(lambda: placed() == 12, 90), (tmp_path / "holds-second.log").read_text()
    finally:
        kill_group(worker, signal.SIGTERM)

    # Every hold was placed once: at most the call the kill cut short was sent again, with the same key,
    # and Stripe answered it with the same PaymentIntent
    holds = list(Authorization.objects.filter(drop=drop))
    keys = stripe_proxy.keys_for("/v1/payment_intents")
    assert set(keys) == {idempotency_key("hold", authorization) for authorization in holds}
    repeats = [key for key in set(keys) if keys.count(key) > 1]
    assert len(repeats) <= 1
    assert all(keys.count(key) == 2 for key in repeats)
    intents = [pi for pi in stripe_client().v1.payment_intents.list(params={"limit": 1_000_000}).data
               if pi.metadata.to_dict().get("drop_id") == str(drop.pk)]  # fmt: skip
    assert sorted(pi.id for pi in intents if pi.id in {a.payment_intent_id for a in holds}) == sorted(
        a.payment_intent_id for a in holds
    )
    assert len({a.payment_intent_id for a in holds}) == 12
    ours = {str(a.pk) for a in holds}
    per_hold = Counter(pi.metadata.to_dict().get("authorization_id") for pi in intents
                       if pi.created >= int(drop.created_at.timestamp()))  # fmt: skip
    assert {key: n for key, n in per_hold.items() if key in ours} == dict.fromkeys(ours, 1)  # no second hold


def test_a_saturated_payments_queue_does_not_slow_admission(tmp_path, redis_prefix, redis):
    from celery import Celery

    # Given a live drop admitting 20 a second, a worker for Stripe work (the default queue) and one for ticks,
    # as the Procfile runs them
    drop = DropFactory(quantity=10_000, admission_rate=20, checkout_window=600)
    inventory_services.drop_arm(drop=drop)
    services.queue_start(drop=drop)
    for shopper in range(1, 501):
        services.ticket_issue(drop=drop, shopper_id=shopper, require_authorization=False)
    sender = Celery(broker=settings.REDIS_URL, set_as_current=False)
    sender.conf.broker_transport_options = {"global_keyprefix": f"{redis_prefix}:celery:"}
    # and a default queue buried under 3,000 tasks (cancellation checks; each reads the database)
    for _ in range(3_000):
        sender.send_task("payments.tasks.authorizations_cancel_due", queue="celery")
    workers = [
        start_celery(tmp_path, redis_prefix, name="stripe-work", beat=False, queues="celery"),
        start_celery(tmp_path, redis_prefix, name="ticker", beat=False, queues="ticks,holds"),
    ]
    try:
        # When beat sends the admission tick every half second for 6 s
        assert wait_until(lambda: redis.llen(f"{redis_prefix}:celery:celery") < 3_000, 30)  # work has begun
        started, start_served = time.monotonic(), served(drop)
        while time.monotonic() - started < 6:
            sender.send_task("flashsale.checkout.tasks.queue_tick_all", queue="ticks")
            time.sleep(0.5)
        elapsed, admitted = time.monotonic() - started, served(drop) - start_served

        # Then admission kept its rate (20 a second, within a tick), while the default queue was still busy
        assert admitted >= 20 * (elapsed - 1.5), (admitted, elapsed, (tmp_path / "ticker.log").read_text())
        assert redis.llen(f"{redis_prefix}:celery:celery") > 0
    finally:
        for worker in workers:
            kill_group(worker, signal.SIGTERM)

"""Every log line names its drop and shopper; LOG_FORMAT=json writes one JSON object per line."""

import json
import logging
import os

import pytest

from flashsale.logs import ContextFilter, JsonFormatter, log_context

pytestmark = pytest.mark.django_db


def record(message="hello"):
    return logging.LogRecord("flashsale.test", logging.WARNING, __file__, 1, message, None, None)


def test_the_context_reaches_every_record_and_ends_with_its_block():
    context_filter = ContextFilter()
    with log_context(drop="air", shopper=42):
        inside = record()
        context_filter.filter(inside)
    outside = record()
    context_filter.filter(outside)
    assert (inside.drop, inside.shopper) == ("air", "42")
    assert (outside.drop, outside.shopper) == ("-", "-")


def test_json_lines():
    line = record("sold %s")
    line.args = ("out",)
    ContextFilter().filter(line)
    with log_context(drop="air"):
        data = json.loads(JsonFormatter().format(line))
    assert {k: data[k] for k in ("level", "logger", "drop", "shopper", "message")} == {
        "level": "WARNING",
        "logger": "flashsale.test",
        "drop": "-",
        "shopper": "-",
        "message": "sold out",
    }


def test_a_request_logs_with_its_drop_and_shopper(client, shopper, make_drop, caplog):
    make_drop(slug="air")
    client.force_login(shopper)
    caplog.handler.addFilter(ContextFilter())
    with caplog.at_level(logging.WARNING, logger="django.request"):
        client.get("/api/drops/air/authorization")  # 404: Django logs it as a warning
    logged = [r for r in caplog.records if r.name == "django.request"]
    assert logged
    assert (logged[-1].drop, logged[-1].shopper) == ("air", str(shopper.pk))


def test_stripes_logger_never_logs_at_debug_and_otherwise_follows_log_level():
    import subprocess
    import sys

    def stripe_level(log_level: str) -> str:
        code = "import logging, django; django.setup(); print(logging.getLevelName(logging.getLogger('stripe').level))"
        env = {**os.environ, "LOG_LEVEL": log_level, "DJANGO_SETTINGS_MODULE": "flashsale.settings.base"}
        return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout

    assert stripe_level("DEBUG").strip() == "INFO"
    assert stripe_level("INFO").strip() == "INFO"
    assert stripe_level("WARNING").strip() == "WARNING"

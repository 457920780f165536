"""Every log line carries the drop and the shopper it is about; JSON lines when LOG_FORMAT=json.

The request middleware (and the queue's fast path, and the Celery tasks that work per drop) set a
context variable; a filter copies it onto each record, so no call site has to repeat it.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
from collections.abc import Callable, Iterator

from django.contrib.auth import SESSION_KEY
from django.core.signals import request_finished
from django.db import DatabaseError
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse
from redis.exceptions import RedisError

_context: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar("flashsale_log_context", default=None)


_request_token: contextvars.ContextVar[contextvars.Token | None] = contextvars.ContextVar(
    "flashsale_log_request_token", default=None
)


@receiver(request_finished)
def _request_context_end(sender, **kwargs) -> None:
    token = _request_token.get()
    if token is not None:
        _request_token.set(None)
        with contextlib.suppress(ValueError):  # set in another context (ASGI): that one ends by itself
            _context.reset(token)


def _current() -> dict[str, str]:
    return _context.get() or {}


@contextlib.contextmanager
def log_context(**values: object) -> Iterator[None]:
    """Add ``values`` (drop, shopper, ...) to every line logged inside the block."""
    token = _context.set({**_current(), **{k: str(v) for k, v in values.items() if v is not None}})
    try:
        yield
    finally:
        _context.reset(token)


def log_context_set(**values: object) -> None:
    """Add ``values`` to the current log context until the enclosing ``log_context`` block ends."""
    _context.set({**_current(), **{k: str(v) for k, v in values.items() if v is not None}})


class ContextFilter(logging.Filter):
    """Put the current drop and shopper (or "-") on the record."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = _current()
        record.drop = context.get("drop", "-")
        record.shopper = context.get("shopper", "-")
        return True


class ClientErrorFilter(logging.Filter):
    """One line, no traceback, for a client's mistake: Django's security log (a bad Host header, say) and a
    4xx it logs with the exception (a multipart body it cannot parse). A traceback is for our bugs."""

    def filter(self, record: logging.LogRecord) -> bool:
        client_error = record.name.startswith("django.security.") or (
            record.name == "django.request" and getattr(record, "status_code", 500) < 500
        )
        if client_error and record.exc_info:
            record.msg = f"{record.msg} ({record.exc_info[0].__name__})"
            record.exc_info = None
            record.exc_text = None
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, drop, shopper, message (and the exception)."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "drop": getattr(record, "drop", "-"),
            "shopper": getattr(record, "shopper", "-"),
            "message": record.getMessage(),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line)


class LogContextMiddleware:
    """Set the log context of a request: the shopper from the session, the drop from the URL."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        session = getattr(request, "session", None)
        try:
            shopper = session.get(SESSION_KEY) if session is not None else None
        except (RedisError, DatabaseError):  # the session store is away: the view answers 503
            shopper = None
        # Left in place after the middleware returns: Django logs the response (a 4xx or 5xx) after
        # that, and the line should name the drop and shopper too. Reset when the request finishes.
        _request_token.set(_context.set({"shopper": str(shopper)} if shopper is not None else {}))
        return self.get_response(request)

    def process_view(self, request: HttpRequest, view, args, kwargs) -> None:
        if "slug" in kwargs:
            log_context_set(drop=kwargs["slug"])

"""The JSON API's conventions in one place: error bodies, body parsing, authentication.

Every error is a 4xx with ``{"error": {"code", "message"}}``; malformed JSON, a missing
field or a wrong type is ``400 invalid_request``; a request that needs a shopper and has
none is ``401 not_authenticated``.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable
from typing import Any

from django.contrib.auth import SESSION_KEY
from django.core.exceptions import ObjectDoesNotExist, RequestDataTooBig
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse, JsonResponse
from prometheus_client import Counter
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)

MAX_JSON_BYTES = 16 * 1024


class ApiError(Exception):
    """An error the API answers with its status and code; raise it from views and parsers."""

    def __init__(self, status: int, code: str, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, dict(headers or {})
        if status == 503:
            self.headers.setdefault("Retry-After", "2")  # every 503 is "try again": say when


def error_response(status: int, code: str, message: str, *, headers: dict[str, str] | None = None) -> JsonResponse:
    response = JsonResponse({"error": {"code": code, "message": message}}, status=status)
    for name, value in (headers or {}).items():
        response[name] = value
    if status == 503 and "Retry-After" not in response:
        response["Retry-After"] = "2"  # every 503 is "try again": say when
    if status == 503 and "Retry-After" in response:
        # Expected back-pressure (the client retries after the header): counted and logged at INFO, not
        # Django's ERROR line per request, which buried the real errors of an outage under thousands.
        BACKPRESSURE.labels(code).inc()
        logger.info("answered 503 %s (retry after %s s)", code, response["Retry-After"])
        response._has_been_logged = True
    return response


BACKPRESSURE = Counter(
    "flashsale_backpressure_total", "503 answers with Retry-After (expected back-pressure), by code.", ["code"]
)


def invalid(message: str) -> ApiError:
    return ApiError(400, "invalid_request", message)


def json_body(request: HttpRequest) -> dict[str, Any]:
    """Return the request's JSON object; an empty body counts as ``{}``."""
    try:
        body = request.body
    except RequestDataTooBig:  # over Django's DATA_UPLOAD_MAX_MEMORY_SIZE: not even read
        raise ApiError(413, "request_too_large", "The request body is too large.") from None
    if len(body) > MAX_JSON_BYTES:
        raise ApiError(413, "request_too_large", "The request body is too large.")
    if not request.body.strip():
        return {}
    try:
        data = json.loads(request.body)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):  # RecursionError: nesting too deep
        raise invalid("The body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise invalid("The body must be a JSON object.")
    return data


def field(data: dict[str, Any], name: str, kind: type, *, required: bool = True, default: Any = None) -> Any:
    """Return ``data[name]`` checked to be of ``kind`` (bool is never an int here)."""
    if name not in data or data[name] is None:
        if required:
            raise invalid(f"The field '{name}' is required.")
        return default
    value = data[name]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise invalid(f"The field '{name}' must be of type {kind.__name__}.")
    if kind is str and "\x00" in value:
        # PostgreSQL refuses NUL in text (a DataError, which would answer 503); no field needs one.
        raise invalid(f"The field '{name}' must not contain NUL characters.")
    return value


def api_view(view: Callable[..., JsonResponse]) -> Callable[..., JsonResponse]:
    """Turn ``ApiError`` raised by the view into its JSON error response."""

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> JsonResponse:
        try:
            return view(request, *args, **kwargs)
        except ApiError as exc:
            return error_response(exc.status, exc.code, exc.message, headers=exc.headers)

    return wrapper


def session_shopper_required(view: Callable[..., JsonResponse]) -> Callable[..., JsonResponse]:
    """Like ``shopper_required`` but from the session alone, without loading the user row.

    For the hot paths (join, position): the shopper's id is set as ``request.shopper_id``.
    Django's check that the password has not changed since sign-in is skipped here; the
    purchase and payment paths use ``shopper_required``, which makes it.
    """

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> JsonResponse:
        raw = request.session.get(SESSION_KEY)
        try:
            request.shopper_id = int(raw)
        except (TypeError, ValueError):
            return error_response(401, "not_authenticated", "Sign in first.")
        return view(request, *args, **kwargs)

    return wrapper


def shopper_required(view: Callable[..., JsonResponse]) -> Callable[..., JsonResponse]:
    """Answer ``401 not_authenticated`` unless a shopper is signed in."""

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> JsonResponse:
        if not request.user.is_authenticated:
            return error_response(401, "not_authenticated", "Sign in first.")
        return view(request, *args, **kwargs)

    return wrapper


GENERIC_ERRORS = {
    400: ("invalid_request", "The request is not valid."),
    403: ("forbidden", "This is not allowed."),
    404: ("not_found", "There is nothing here."),
    405: ("method_not_allowed", "This method is not allowed here."),
    413: ("request_too_large", "The request body is too large."),
}


class ApiErrorMiddleware:
    """Keep the API's error shape everywhere under /api/.

    Django answers some errors before or around our views (an unmatched route, a method the
    view does not take, a body it cannot parse) with HTML or an empty body; those become the
    API's JSON error. A Redis or database outage becomes ``503 service_unavailable``, never a
    500: the inventory's database guard and Lua scripts are each atomic, so nothing was left
    half-done and the client may retry after a moment.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if (
            request.path.startswith("/api/")
            and response.status_code in GENERIC_ERRORS
            and not response.get("Content-Type", "").startswith("application/json")
        ):
            code, message = GENERIC_ERRORS[response.status_code]
            replacement = error_response(response.status_code, code, message)
            for header in ("Allow", "Retry-After"):
                if header in response:
                    replacement[header] = response[header]
            return replacement
        return response

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not request.path.startswith("/api/"):
            return None
        if isinstance(exception, ObjectDoesNotExist):  # e.g. a drop deleted while a process still cached it
            code, message = GENERIC_ERRORS[404]
            return error_response(404, code, message)
        if not isinstance(exception, RedisError | DatabaseError):
            return None
        logger.error("%s on %s %s: %s", type(exception).__name__, request.method, request.path, exception)
        return error_response(
            503,
            "service_unavailable",
            "The service is briefly unavailable; try again in a moment.",
            headers={"Retry-After": "2"},
        )


class OutageGuard:
    """ASGI middleware for websockets: a Redis or database outage while a socket connects (reading its
    session) closes it with 1013, "try again later", instead of failing the handshake with a 500."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        accepted = False

        async def tracking_send(message):
            nonlocal accepted
            accepted = accepted or message["type"] in ("websocket.accept", "websocket.close")
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except (RedisError, DatabaseError) as exc:
            logger.warning("websocket %s refused during an outage: %s", scope.get("path"), exc)
            if not accepted:
                await send({"type": "websocket.close", "code": 1013})

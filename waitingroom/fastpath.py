"""The lean ASGI path for the two hottest requests: joining the queue and reading one's place.

``POST`` and ``GET /api/drops/<slug>/queue`` are answered here, in front of Django, with the
same rules as ``waitingroom.api.queue``: Django's session (read from the session cache),
Django's CSRF check (``CsrfViewMiddleware``), the same proof-of-work, bot scoring and join
plan (``waitingroom.services.join_plan``), the same Lua scripts. What it leaves out is the
cost: no middleware stack, no thread hop, no database, and two Redis calls on the process's
pipelined connection (``flashsale.lean_redis``): the session read, then the join (or entry)
script with the rate limits counted in front of it.

Anything unusual goes to Django unchanged: a session that is not in the cache, reCAPTCHA
configured, an oversized body. The drop comes from this process's cache (read at most once a
second).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from dataclasses import dataclass
from functools import cache, lru_cache

from channels.db import database_sync_to_async
from django.conf import settings
from django.contrib.auth import SESSION_KEY
from django.contrib.sessions.backends.cached_db import KEY_PREFIX as SESSION_CACHE_PREFIX
from django.core.cache import caches
from django.core.exceptions import DisallowedHost
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.http import HttpRequest, QueryDict
from django.http.cookie import parse_cookie
from django.middleware.csrf import CsrfViewMiddleware
from redis.exceptions import NoScriptError, RedisError

from flashsale.api import MAX_JSON_BYTES, ApiError, field, invalid
from flashsale.logs import log_context, log_context_set
from flashsale.lua import lua_source
from flashsale.metrics import JOINS, ROUTE_LEAN_QUEUE, request_observe
from flashsale.net import client_ip
from flashsale.redis import async_redis_client, cache_url
from flashsale.wsgi_bridge import ClientGone
from inventory.errors import InventoryError
from inventory.redis_keys import drop_tag

from . import selectors, services
from .api import FINGERPRINT_LENGTH, SIGNALS_FIELD, signals_clean
from .recaptcha import recaptcha_enabled
from .redis_keys import queue_keys
from .scripts import LUA_DIR
from .signals import JOINED_AT_SESSION_KEY

logger = logging.getLogger(__name__)

PATH = re.compile(r"^/api/drops/(?P<slug>[-a-zA-Z0-9_]+)/queue$")
RATELIMIT_PRELUDE = lua_source(settings.BASE_DIR / "flashsale" / "lua" / "ratelimit_prelude.lua")
# The prelude on its own: count a request that will make no other Redis call.
RATELIMIT_ONLY = RATELIMIT_PRELUDE + "return {0, 0}\n"
PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class FallThrough(Exception):
    """Let Django answer this request."""


class QueueFastPath:
    """ASGI middleware: serve the queue endpoints itself, pass everything else to ``app``."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        match = PATH.match(scope.get("path", "")) if scope["type"] == "http" else None
        if match is None or scope["method"] not in ("GET", "POST") or not settings.WAITINGROOM_FAST_PATH:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        try:
            body, larger, more = await _read_body(receive)
        except ClientGone:
            return  # the body was cut off: nothing to answer, nothing to join
        try:
            if larger:
                raise FallThrough
            with log_context(drop=match["slug"]):
                # Names with underscores are dropped, as Django's ASGI handler does (X_Forwarded_For must not
                # pass for X-Forwarded-For).
                headers = {
                    k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"] if b"_" not in k
                }
                request = _request(scope, headers, parse_cookie(headers.get("cookie", "")))
                status, payload, extra = await self.handle(scope, request, headers, body, match["slug"])
        except FallThrough:
            await self.app(scope, _replay(body, receive, more), send)
            return
        except (RedisError, OSError) as exc:
            logger.warning("queue fast path: Redis failed (%s); answering through Django", exc)
            await self.app(scope, _replay(body, receive, more), send)
            return
        await _respond(send, status, payload, [*extra, *_security_headers(request)])
        request_observe(scope["method"], ROUTE_LEAN_QUEUE, status, started)

    async def handle(
        self, scope, request: HttpRequest, headers: dict, body: bytes, slug: str
    ) -> tuple[int, dict, list]:
        session = await _session(request.COOKIES.get(settings.SESSION_COOKIE_NAME, ""))
        if not _host_allowed(request._get_raw_host()):  # ALLOWED_HOSTS, as Django checks it for every request
            raise FallThrough  # Django answers it (400), with its log line
        if scope["method"] == "POST":
            rejection = _csrf_middleware().process_view(request, _queue_view_marker, (), {})
            if rejection is not None:
                return rejection.status_code, json.loads(rejection.content), []
        try:
            shopper_id = int(session.get(SESSION_KEY))
        except (TypeError, ValueError):
            return _error(ApiError(401, "not_authenticated", "Sign in first."))
        log_context_set(shopper=shopper_id)
        # The drop only after the session: a client with no session never reaches the database.
        fresh, drop = selectors.drop_cached_peek(slug=slug)
        if not fresh:
            # At most once a second per process and drop: read it in a thread, as Django would, and give
            # the connection back afterwards (outside a request nothing else closes it).
            drop = await database_sync_to_async(selectors.drop_cached_get)(slug=slug)
        if drop is None:
            return _error(ApiError(404, "not_found", "There is no such drop."))
        group = "queue-join" if scope["method"] == "POST" else "queue-read"
        limits = _limits(group, drop=drop, shopper_id=shopper_id, ip=client_ip(request))
        client = async_redis_client()
        try:
            if scope["method"] == "GET":
                try:
                    entry = await _entry(client, drop, shopper_id, limits=limits)  # counted in the same call
                except InventoryError as exc:  # the queue is being restored: 503, never a false 404
                    raise ApiError(exc.status, exc.code, exc.message) from None
                if entry is None:
                    return _error(ApiError(404, "not_in_queue", "You are not in this drop's queue."))
                return 200, entry.as_dict(), []
            try:
                return await self._join(client, drop, shopper_id, body, headers, session, limits)
            except ApiError as exc:
                if exc.status != 429 and not limits.counted:
                    await _count_only(client, limits)  # refused before Redis: it still counts
                raise
        except ApiError as exc:
            return _error(exc)

    async def _join(self, client, drop, shopper_id: int, body: bytes, headers: dict, session: dict, limits):
        if recaptcha_enabled():
            raise FallThrough  # Google's verify call is blocking I/O: Django's path makes it
        data = _json(body)
        payload = field(data, "altcha", str)
        fingerprint = field(data, "fingerprint", str)
        if not FINGERPRINT_LENGTH[0] <= len(fingerprint) <= FINGERPRINT_LENGTH[1]:
            raise invalid("The fingerprint must have 8 to 256 characters.")
        signals = signals_clean(field(data, SIGNALS_FIELD, dict, required=False, default={}))
        joined = session.get(JOINED_AT_SESSION_KEY)
        try:
            plan = services.join_plan(
                drop=drop, shopper_id=shopper_id, pow_payload=payload, fingerprint=fingerprint, signals=signals,
                user_agent=headers.get("user-agent", ""),
                account_age=None if joined is None else time.time() - float(joined),
            )  # fmt: skip
            if plan.refused is not None:
                await _count_blocked(client, drop, plan.refused.reasons)
                raise plan.refused
            raw = await _eval_limited(client, "join", plan.keys, plan.args, limits)
            entry, created = services.join_result(drop=drop, raw=raw)
            if entry is None:
                entry = await _entry(client, drop, shopper_id)
        except InventoryError as exc:
            JOINS.labels(drop.slug, exc.code).inc()
            raise ApiError(exc.status, exc.code, exc.message) from None
        JOINS.labels(drop.slug, "joined" if created else "existing").inc()
        return (201 if created else 200), entry.as_dict(), []


def _queue_view_marker(request):  # CsrfViewMiddleware looks at the view only for csrf_exempt
    return None


async def _read_body(receive) -> tuple[bytes, bool, bool]:
    """Read the body up to the API's limit: (what was read, whether it is larger, whether more is to come).

    "More to come" must be exact: Django waits for a body that was promised, so an oversized body
    that arrived whole must not be handed on as unfinished (the request would hang).
    """
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise ClientGone
        chunk = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
        more = bool(message.get("more_body", False))
        if size > MAX_JSON_BYTES:
            return b"".join(chunks), True, more
        if not more:
            return b"".join(chunks), False, False


def _replay(body: bytes, receive, more: bool):
    """A receive callable that hands Django the body already read, then the rest of the stream."""
    sent = False

    async def replay():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": bool(more)}
        return await receive()

    return replay


def _security_headers(request: HttpRequest) -> list[tuple[bytes, bytes]]:
    """What Django's SecurityMiddleware adds to every response, which this path does not go through
    (HSTS when ``request.is_secure()``, which reads SECURE_PROXY_SSL_HEADER as Django does)."""
    plain, secure = _security_header_sets()
    if secure is plain or not request.is_secure():
        return plain
    return secure


@cache
def _security_header_sets() -> tuple[list, list]:
    """The headers for a plain HTTP answer and for an HTTPS one (HSTS), built once from the settings."""
    headers = []
    if settings.SECURE_CONTENT_TYPE_NOSNIFF:
        headers.append((b"x-content-type-options", b"nosniff"))
    if settings.SECURE_REFERRER_POLICY:
        headers.append((b"referrer-policy", settings.SECURE_REFERRER_POLICY.encode()))
    if settings.SECURE_CROSS_ORIGIN_OPENER_POLICY:
        headers.append((b"cross-origin-opener-policy", settings.SECURE_CROSS_ORIGIN_OPENER_POLICY.encode()))
    if not settings.SECURE_HSTS_SECONDS:
        return headers, headers
    value = f"max-age={settings.SECURE_HSTS_SECONDS}"
    value += "; includeSubDomains" if settings.SECURE_HSTS_INCLUDE_SUBDOMAINS else ""
    value += "; preload" if settings.SECURE_HSTS_PRELOAD else ""
    return headers, [*headers, (b"strict-transport-security", value.encode())]


async def _respond(send, status: int, payload: dict, headers: list) -> None:
    content = json.dumps(payload).encode()
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(content)).encode()),
                    (b"vary", b"Cookie"), *headers],
    })  # fmt: skip
    await send({"type": "http.response.body", "body": content})


async def _session(session_key: str) -> dict:
    """The session's data from the session cache; fall through to Django when it is not there."""
    if not session_key or settings.SESSION_ENGINE != "django.contrib.sessions.backends.cached_db":
        raise FallThrough
    cache_client = _session_cache_client()
    sessions = async_redis_client(cache_url(settings.SESSION_CACHE_ALIAS))  # CACHE_URL's Redis, not the sale's
    raw = await sessions.execute_command("GET", cache_client.make_key(SESSION_CACHE_PREFIX + session_key))
    if raw is None:
        raise FallThrough  # only in the database: Django loads it and puts it back in the cache
    data = cache_client.decode(raw)
    if not isinstance(data, dict):
        raise FallThrough
    return data


@cache
def _session_cache_client():
    """The session cache's django-redis client, for its key naming and its decoding: ``caches[...]`` makes a
    new cache object in every asyncio task (a context of its own), so the lean path keeps one."""
    return caches[settings.SESSION_CACHE_ALIAS].client


class _BareRequest(HttpRequest):
    """An HttpRequest with no query and no form: CSRF and the client address read only its headers and
    cookies, so the two QueryDicts HttpRequest makes are not made (one shared, empty and immutable)."""

    def __init__(self) -> None:
        self.GET = self.POST = _empty_query()
        self.COOKIES, self.META, self.FILES = {}, {}, {}
        self.path = self.path_info = ""
        self.method = self.resolver_match = self.content_type = self.content_params = None


@cache
def _empty_query() -> QueryDict:
    return QueryDict()


@cache
def _csrf_middleware() -> CsrfViewMiddleware:
    """One CSRF middleware for the process, as Django keeps one (it holds nothing of a request)."""
    return CsrfViewMiddleware(lambda request: None)


@lru_cache(maxsize=256)
def _host_allowed(raw_host: str) -> bool:
    """Whether Django's ``get_host`` accepts this Host (its answer depends on nothing else: kept)."""
    probe = HttpRequest()
    probe.META = {"HTTP_HOST": raw_host}
    try:
        probe.get_host()
    except DisallowedHost:
        return False
    return True


@receiver(setting_changed)
def _settings_changed(**kwargs) -> None:  # tests change ALLOWED_HOSTS, DEBUG, the CSRF settings
    _csrf_middleware.cache_clear()
    _host_allowed.cache_clear()
    _session_cache_client.cache_clear()
    _security_header_sets.cache_clear()
    _empty_query.cache_clear()


def _request(scope, headers: dict, cookies: dict) -> HttpRequest:
    """A bare HttpRequest carrying what CSRF and the client address need (no body, no session)."""
    request = _BareRequest()
    request.method = scope["method"]
    request.path = request.path_info = scope["path"]
    request.COOKIES = cookies
    server = scope.get("server") or ("", "")
    client = scope.get("client") or ("", 0)
    request.META = {
        "REMOTE_ADDR": client[0],
        "SERVER_NAME": server[0] or "",
        "SERVER_PORT": str(server[1] or ""),
        "wsgi.url_scheme": scope.get("scheme", "http"),
        **{f"HTTP_{name.upper().replace('-', '_')}": value for name, value in headers.items()},
    }
    if scope.get("scheme") == "https":
        request._get_scheme = lambda: "https"
    return request


def _json(body: bytes) -> dict:
    if not body.strip():
        return {}
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):  # RecursionError: nesting too deep
        raise invalid("The body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise invalid("The body must be a JSON object.")
    return data


def _error(exc: ApiError) -> tuple[int, dict, list]:
    headers = [(name.lower().encode(), value.encode()) for name, value in exc.headers.items()]
    return exc.status, {"error": {"code": exc.code, "message": exc.message}}, headers


@dataclass
class Limits:
    """The rate-limit counters of one request, counted inside the call that serves it."""

    keys: list[str]
    args: list[int]  # a limit and a period per counter
    now: int
    counted: bool = False


def _limits(group: str, *, drop, shopper_id: int, ip: str) -> Limits:
    """The group's limits for this shopper and address, as counters in the drop's Redis slot."""
    now = int(time.time())
    keys, args = [], []
    if settings.RATELIMIT_ENABLE:
        for key, rate in settings.RATE_LIMITS[group]:
            limit, period = _rate(rate)
            value = f"shopper:{shopper_id}" if key == "shopper" else f"ip:{ip}"
            keys.append(f"{drop_tag(drop.pk)}:rl:{group}:{value}:{now - now % period}")
            args.extend([limit, period])
    return Limits(keys=keys, args=args, now=now)


def _rate_limited(limits: Limits, over: int) -> ApiError:
    period = limits.args[2 * over - 1]
    retry = max(1, period - limits.now % period)  # the seconds left in the window that is full
    return ApiError(429, "rate_limited", f"Too many requests; try again in {retry} seconds.",
                    headers={"Retry-After": str(retry)})  # fmt: skip


async def _eval_limited(client, name: str, keys: list, args: list, limits: Limits) -> list:
    """Run script ``name`` behind the rate-limit prelude: one call counts the request and serves it."""
    if not limits.keys:
        return await _eval(client, name, _source(name), keys, args)
    raw = await _eval(client, f"limited:{name}", _source(f"limited:{name}"), [*limits.keys, *keys],
                      [len(limits.keys), *limits.args, *args])  # fmt: skip
    limits.counted = True
    if raw and raw[0] == -429:
        raise _rate_limited(limits, raw[1])
    return raw


async def _count_only(client, limits: Limits) -> None:
    """Count a request refused before its Redis call (bad body, bad proof-of-work) against its limits."""
    if limits.keys:
        code, over = await _eval(client, "ratelimit", RATELIMIT_ONLY, limits.keys, [len(limits.keys), *limits.args])
        limits.counted = True
        if code == -429:
            raise _rate_limited(limits, over)


@cache
def _rate(rate: str) -> tuple[int, int]:
    count, unit = rate.split("/")
    return int(count), PERIODS[unit[-1]] * int(unit[:-1] or 1)


@cache
def _source(name: str) -> str:
    """A script's source by name; ``limited:<name>`` is the script behind the rate-limit prelude."""
    if name.startswith("limited:"):
        return RATELIMIT_PRELUDE + _source(name.removeprefix("limited:"))
    return lua_source(LUA_DIR / f"{name}.lua")


async def _entry(client, drop, shopper_id: int, *, limits: Limits | None = None):
    keys, args = selectors.entry_call(drop=drop, shopper_id=shopper_id)
    if limits is None:
        raw = await _eval(client, "entry", _source("entry"), keys, args)
    else:
        raw = await _eval_limited(client, "entry", keys, args, limits)
    return selectors.entry_from_raw(drop=drop, raw=raw)


_shas: dict[str, str] = {}


async def _eval(client, name: str, source: str, keys: list, args: list) -> list:
    """EVALSHA, loading the script on NOSCRIPT (a restarted or flushed Redis)."""
    sha = _shas.get(name)
    if sha is None:
        sha = _shas[name] = await client.script_load(source)
    try:
        return await client.execute_command("EVALSHA", sha, len(keys), *keys, *args)
    except NoScriptError:
        _shas.pop(name, None)
        sha = _shas[name] = await client.script_load(source)
        return await client.execute_command("EVALSHA", sha, len(keys), *keys, *args)


async def _count_blocked(client, drop, reasons: list[str]) -> None:
    key = queue_keys(drop.pk).blocked
    await asyncio.gather(*(client.execute_command("HINCRBY", key, reason, 1) for reason in reasons))

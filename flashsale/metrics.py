"""Prometheus metrics: request latency, business counters, and drop gauges read at scrape time.

With ``PROMETHEUS_MULTIPROC_DIR`` set (``make run`` sets it) counters and histograms are
shared by every web and worker process through prometheus_client's multiprocess mode; the
drop gauges are computed when /metrics is scraped, from Redis and the database, so they are
the same figures ``drop_status --json`` prints.
"""

from __future__ import annotations

import ipaddress
import os
import time
from collections.abc import Iterator

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from flashsale.api import error_response
from flashsale.checkout.selectors import drop_status_get
from flashsale.net import client_ip
from inventory.selectors import drop_list_visible
from waitingroom.selectors import bot_stats_get, queue_stats_get

REQUEST_LATENCY = Histogram(
    "flashsale_http_request_duration_seconds",
    "Time to answer an HTTP request, by route.",
    ["method", "route", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 1, 2.5, 5, 10),
)
JOINS = Counter("flashsale_joins_total", "Queue join requests by drop and outcome.", ["drop", "outcome"])
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Reasons of ``bot_stats_get(...).blocked`` that are about a card, not about a suspected bot.
CARD_REFUSALS = frozenset({"card_limit"})
# Routes of requests answered before Django's URL resolver (a bounded set: never the raw path).
ROUTE_LEAN_QUEUE = "api/drops/<slug:slug>/queue"  # the lean ASGI path (waitingroom.fastpath), as Django names it
ROUTE_STATIC = "static"  # a static file (WhiteNoise answers it before routing)
ROUTE_NOT_FOUND = "not_found"  # no route matches the path
ROUTE_REDIRECT = "redirect"  # CommonMiddleware's redirect to the path with a slash
ROUTE_BEFORE_ROUTING = "before_routing"  # refused by a middleware before routing (bad host, an outage's 503)
PURCHASES = Counter("flashsale_purchases_total", "Purchase requests by drop and outcome.", ["drop", "outcome"])


class DropCollector(Collector):
    """Gauges of every visible drop, read when scraped."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        families = {
            name: GaugeMetricFamily(f"flashsale_drop_{name}", text, labels=labels)
            for name, text, labels in (
                ("quantity", "Units on sale.", ["drop"]),
                ("stock_remaining", "Units free to claim (Redis).", ["drop"]),
                ("units_sold", "Units in paid orders.", ["drop"]),
                ("units_held", "Units held for shoppers who have not finished.", ["drop"]),
                ("queue_length", "Shoppers queued, pre-queue included.", ["drop"]),
                ("queue_serving", "Highest ticket admitted.", ["drop"]),
                ("admitted", "Admitted shoppers whose checkout window is open.", ["drop"]),
                ("admission_rate_setting", "Admissions per second the drop is set to.", ["drop"]),
                ("admission_rate_measured", "Admissions per second measured by the ticks.", ["drop"]),
                ("state", "1 for the drop's current state.", ["drop", "state"]),
                ("orders", "Orders by status.", ["drop", "status"]),
                ("authorizations", "Card authorizations by status.", ["drop", "status"]),
                ("joins_refused", "Joins refused as suspected bots, by reason.", ["drop", "reason"]),
                (
                    "cards_refused",
                    "Card holds refused (and released) because more accounts use the card than the drop allows.",
                    ["drop", "reason"],
                ),
                ("entries_parked", "Entries parked as bots, by reason.", ["drop", "reason"]),
            )
        }
        for drop in drop_list_visible():
            status = drop_status_get(drop=drop)
            queue = queue_stats_get(drop_id=drop.pk)
            bots = bot_stats_get(drop_id=drop.pk)
            slug = drop.slug
            stock = status["stock"]
            families["quantity"].add_metric([slug], drop.quantity)
            families["stock_remaining"].add_metric([slug], stock["redis"] if stock["redis"] is not None else 0)
            families["units_sold"].add_metric([slug], stock["sold"])
            families["units_held"].add_metric([slug], stock["held"])
            families["queue_length"].add_metric([slug], queue.length)
            families["queue_serving"].add_metric([slug], queue.serving)
            families["admitted"].add_metric([slug], queue.admitted)
            families["admission_rate_setting"].add_metric([slug], drop.admission_rate)
            families["admission_rate_measured"].add_metric([slug], queue.measured_rate)
            families["state"].add_metric([slug, status["state"]], 1)
            for name, counts in (("orders", status["orders"]), ("authorizations", status["authorizations"])):
                for key, value in counts.items():
                    families[name].add_metric([slug, key], value)
            for reason, value in bots.blocked.items():
                # The card limit is counted with the bot refusals in Redis, but it refuses a card, not a bot.
                name = "cards_refused" if reason in CARD_REFUSALS else "joins_refused"
                families[name].add_metric([slug, reason], value)
            for reason, value in bots.flagged.items():
                families["entries_parked"].add_metric([slug, reason], value)
        yield from families.values()


def _registry() -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    return registry


_drops = DropCollector()


def _allowed(request: HttpRequest) -> bool:
    try:
        address = ipaddress.ip_address(client_ip(request))
    except ValueError:
        return False
    return any(address in ipaddress.ip_network(net) for net in settings.METRICS_ALLOWED_NETWORKS)


@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    """Serve the Prometheus text format to addresses in ``METRICS_ALLOWED_NETWORKS``."""
    if not _allowed(request):
        return error_response(403, "forbidden", "Metrics are only served to internal addresses.")
    registry = _registry()
    scrape = CollectorRegistry(auto_describe=False)
    scrape.register(_drops)
    body = generate_latest(registry) + generate_latest(scrape)
    return HttpResponse(body, content_type=CONTENT_TYPE_LATEST)


class RequestMetricsMiddleware:
    """Time every request into ``flashsale_http_request_duration_seconds`` (sync and async)."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response) -> None:
        self.get_response = get_response
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest):
        if iscoroutinefunction(self):
            return self._acall(request)
        started = time.perf_counter()
        response = self.get_response(request)
        self._observe(request, response, started)
        return response

    async def _acall(self, request: HttpRequest):
        started = time.perf_counter()
        response = await self.get_response(request)
        self._observe(request, response, started)
        return response

    @staticmethod
    def _observe(request: HttpRequest, response: HttpResponse, started: float) -> None:
        request_observe(request.method, request_route(request, response), response.status_code, started)


def request_route(request: HttpRequest, response: HttpResponse) -> str:
    """The route label of a request: its URL pattern, or what answered it when no pattern matched."""
    match = getattr(request, "resolver_match", None)
    if match is not None:
        return match.route
    static = "/" + settings.STATIC_URL.lstrip("/") if settings.STATIC_URL else None
    if static and request.path.startswith(static):
        return ROUTE_STATIC
    if response.status_code == 404:
        return ROUTE_NOT_FOUND
    if response.status_code in (301, 302, 307, 308):
        return ROUTE_REDIRECT
    return ROUTE_BEFORE_ROUTING


def request_observe(method: str, route: str, status: int, started: float) -> None:
    """Time one answered request (``started`` from ``time.perf_counter()``)."""
    method = method if method in HTTP_METHODS else "other"
    REQUEST_LATENCY.labels(method, route, str(status)).observe(time.perf_counter() - started)

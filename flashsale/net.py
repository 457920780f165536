"""The client's address, taken from a configured number of trusted proxies, never blindly."""

from __future__ import annotations

import ipaddress
import re

from django.conf import settings
from django.http import HttpRequest

# A dotted quad in canonical form (ASCII digits, no leading zeros) is what ``ipaddress`` would give
# back unchanged, at several times the cost; every join reads the address.
CANONICAL_IPV4 = re.compile(
    r"(?:(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
)


def client_ip(request: HttpRequest) -> str:
    """Return the address of the client as the last trusted proxy saw it.

    With ``TRUSTED_PROXY_COUNT = n`` the n proxies in front of us each appended the address
    they received from, so the client is the n-th entry from the right of X-Forwarded-For.
    Anything left of that was written by the client and is ignored. With 0 (the default, no
    proxy) the header is not read at all.
    """
    remote = request.META.get("REMOTE_ADDR", "")
    proxies = settings.TRUSTED_PROXY_COUNT
    if proxies <= 0:
        return remote
    hops = [hop.strip() for hop in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if hop.strip()]
    if len(hops) < proxies:
        return remote
    candidate = hops[-proxies]
    if CANONICAL_IPV4.fullmatch(candidate):
        return candidate
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        return remote


def ratelimit_ip(group: str, request: HttpRequest) -> str:
    """django-ratelimit key: the client address (see ``client_ip``)."""
    return client_ip(request)

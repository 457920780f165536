"""Rate limits through django-ratelimit, answered as the API's ``429 rate_limited`` with Retry-After."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django_ratelimit.core import get_usage

from .api import error_response


def _shopper_key(group: str, request: HttpRequest) -> str:
    shopper = getattr(request, "shopper_id", None) or getattr(request.user, "pk", None)
    return f"shopper:{shopper}" if shopper else "anonymous"


KEYS = {"ip": "flashsale.net.ratelimit_ip", "shopper": _shopper_key}


def rate_limited(group: str, *, methods: tuple[str, ...] = ("POST",)):
    """Limit a view by the (key, rate) pairs of ``settings.RATE_LIMITS[group]``.

    Keys are "ip" (the client address, see flashsale.net) and "shopper". Every limit is
    counted on every request in ``methods``; the first one over its rate answers 429 with
    the seconds left in its window as Retry-After.
    """

    def decorate(view: Callable[..., JsonResponse]) -> Callable[..., JsonResponse]:
        @functools.wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> JsonResponse:
            if settings.RATELIMIT_ENABLE and request.method in methods:
                for key, rate in settings.RATE_LIMITS[group]:
                    usage = get_usage(request, group=group, key=KEYS[key], rate=rate, increment=True)
                    if usage is not None and usage["should_limit"]:
                        retry = max(1, usage["time_left"])
                        return error_response(
                            429,
                            "rate_limited",
                            f"Too many requests; try again in {retry} seconds.",
                            headers={"Retry-After": str(retry)},
                        )
            return view(request, *args, **kwargs)

        return wrapper

    return decorate


def password_sign_in_limited(view: Callable[..., Any]) -> Callable[..., Any]:
    """Slow down password guessing on the sign-in pages (the shop's and the admin's, counted together):
    10 attempts a minute per address and 5 per username; past that, 429 with Retry-After (through
    RATELIMIT_VIEW). A password list against one account from many addresses meets the second."""
    from django_ratelimit.decorators import ratelimit

    for key, rate in (("ip", "10/m"), ("post:username", "5/m")):
        view = ratelimit(group="password-sign-in", key=key, rate=rate, method="POST", block=True)(view)
    return view

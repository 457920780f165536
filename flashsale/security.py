"""Browser security headers of the shop's pages: a strict Content-Security-Policy and a Permissions-Policy.

The pages load only our own scripts and styles, the ALTCHA widget (vendored, it solves in web workers
made from blobs) and Stripe.js (localstripe's copy locally). The admin keeps Django's own pages as
they are (its templates carry inline styles), so it is left out.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from urllib.parse import urlsplit

from django.conf import settings
from django.http import HttpRequest, HttpResponse

PERMISSIONS_POLICY = "camera=(), microphone=(), geolocation=(), usb=(), payment=(self)"


@cache
def content_security_policy(stripe_api_base: str, localstripe: bool) -> str:
    """The policy for the shop's pages, with Stripe's origins (or localstripe's, which serves Stripe.js)."""
    if localstripe:
        base = urlsplit(stripe_api_base)
        stripe_origins = f"{base.scheme}://{base.netloc}"
        scripts, frames, connect = stripe_origins, stripe_origins, stripe_origins
    else:
        scripts, frames, connect = (
            "https://js.stripe.com",
            "https://js.stripe.com https://hooks.stripe.com",
            ("https://api.stripe.com"),
        )
    return "; ".join(
        [
            "default-src 'self'",
            f"script-src 'self' {scripts}",
            "style-src 'self' 'unsafe-inline'",  # the ALTCHA widget styles its own element
            "img-src 'self' data: https:",  # product images come from the shop's image host
            f"connect-src 'self' ws: wss: {connect}",
            f"frame-src {frames}",
            "worker-src 'self' blob:",  # the proof-of-work is solved in web workers
            "object-src 'none'",
            "base-uri 'self'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    )


class SecurityPolicyMiddleware:
    """Add the Content-Security-Policy and Permissions-Policy to every HTML page outside the admin."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if response.get("Content-Type", "").startswith("text/html") and not request.path.startswith("/admin/"):
            response.setdefault(
                "Content-Security-Policy",
                content_security_policy(settings.STRIPE_API_BASE, bool(settings.STRIPE_LOCALSTRIPE)),
            )
            response.setdefault("Permissions-Policy", PERMISSIONS_POLICY)
        return response

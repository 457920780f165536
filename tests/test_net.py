"""The client address behind a configured number of proxies: the same answer as ``ipaddress`` gives."""

import ipaddress

import pytest
from django.test import RequestFactory

from flashsale.net import client_ip


def from_proxy(forwarded_for: str):
    return RequestFactory().get("/", REMOTE_ADDR="10.9.9.9", HTTP_X_FORWARDED_FOR=forwarded_for)


def by_ipaddress(candidate: str) -> str:
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        return "10.9.9.9"


@pytest.mark.parametrize(
    "candidate",
    [
        "203.0.113.5", "0.10.200.9", "255.255.255.255", "1.2.3.4", "99.100.199.250",  # canonical: taken as is
        "256.1.1.1", "01.2.3.4", "1.2.3", "1.2.3.4.5", "1.2.3.-4", "\u0661.\u0662.\u0663.\u0664", "1.2.3.4 ",  # refused
        "2001:DB8::1", "::ffff:1.2.3.4", "fe80::1%eth0", "not an address",  # the slow path, as before
    ],
)  # fmt: skip
def test_the_client_address_is_what_ipaddress_makes_of_it(settings, candidate):
    settings.TRUSTED_PROXY_COUNT = 1
    assert client_ip(from_proxy(f"198.51.100.7, {candidate}")) == by_ipaddress(candidate.strip())


def test_without_a_trusted_proxy_the_header_is_not_read(settings):
    settings.TRUSTED_PROXY_COUNT = 0
    assert client_ip(from_proxy("203.0.113.5")) == "10.9.9.9"

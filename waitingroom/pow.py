"""Proof-of-work with ALTCHA: challenges bound to one shopper and one drop, each accepted once.

The binding lives in the challenge's salt parameters, which the HMAC signature covers; the
"accepted once" part is the join script spending the signature in Redis.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from dataclasses import dataclass
from datetime import timedelta

import altcha
from django.conf import settings
from django.utils import timezone

from .errors import PowInvalid

CHALLENGE_SECONDS = 300


@dataclass(frozen=True)
class VerifiedPow:
    signature: str  # spent once, by the join script
    expires_in: int  # seconds the challenge had left


def _key() -> str:
    return f"altcha:{settings.SECRET_KEY}"


def challenge_create(*, drop_id: int, shopper_id: int, cost: int | None = None) -> dict:
    """Return a fresh challenge in the JSON shape the ALTCHA widget expects."""
    challenge = altcha.create_challenge_v1(
        hmac_key=_key(),
        max_number=cost or settings.POW_COST,
        expires=timezone.now() + timedelta(seconds=CHALLENGE_SECONDS),
        params={"drop": str(drop_id), "shopper": str(shopper_id)},
    )
    return {
        "algorithm": challenge.algorithm,
        "challenge": challenge.challenge,
        "maxnumber": challenge.max_number,
        "salt": challenge.salt,
        "signature": challenge.signature,
    }


def _salt_params(salt: str) -> dict[str, list[str]]:
    """The parameters after the salt's ``?``, every value of each name in order.

    Only salts this server issued can pass the signature check that follows, and their names and
    values are plain ASCII, so they are split as they are (``parse_qs`` would also decode escapes).
    """
    params: dict[str, list[str]] = {}
    for pair in salt.partition("?")[2].split("&"):
        if pair:
            name, _, value = pair.partition("=")
            params.setdefault(name, []).append(value)
    return params


def pow_verify(*, payload: str, drop_id: int, shopper_id: int) -> VerifiedPow:
    """Check a widget payload: well formed, solved, signed by us, unexpired, for this drop and shopper."""
    try:
        data = json.loads(base64.b64decode(payload, validate=True))
    except (binascii.Error, ValueError, RecursionError):  # RecursionError: JSON nested too deep
        raise PowInvalid from None
    if not isinstance(data, dict) or not all(isinstance(data.get(k), str) for k in ("salt", "signature")):
        raise PowInvalid
    # The number must be a real integer: a string number lets a client move signed salt parameters
    # (such as the expiry) into it, so that the verifier no longer sees them (the v1 splicing bypass).
    number = data.get("number")
    if not isinstance(number, int) or isinstance(number, bool) or number < 0:
        raise PowInvalid
    params = _salt_params(data["salt"])
    expires = params.get("expires", [])
    expiry = expires[0] if len(expires) == 1 else ""
    # A short run of ASCII digits: "²".isdigit() is true yet int("²") raises, and so does int() of 5,000 digits.
    now = time.time()
    if not (expiry.isascii() and expiry.isdigit() and len(expiry) <= 12) or int(expiry) < now:
        raise PowInvalid("The proof-of-work has expired; solve a fresh challenge.")
    if params.get("drop") != [str(drop_id)] or params.get("shopper") != [str(shopper_id)]:
        raise PowInvalid("This proof-of-work was made for another drop or shopper.")
    ok, _error = altcha.verify_solution_v1(data, _key(), check_expires=True)
    if not ok:
        raise PowInvalid
    remaining = max(1, int(expires[0]) - int(now))
    return VerifiedPow(signature=data["signature"], expires_in=remaining)

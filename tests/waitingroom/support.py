"""Helpers shared by the waiting room's HTTP tests: solving proofs-of-work like the widget does."""

import base64
import json

import altcha

from payments.redis_keys import authorized_key


def authorize(redis, drop, user, card="card-fp-default"):
    # What payments' authorization service records once a card hold succeeds: the card's fingerprint.
    redis.hset(authorized_key(drop.pk), user.pk, f"{card}-{user.pk}" if card == "card-fp-default" else card)


def solved(challenge: dict) -> str:
    solution = altcha.solve_challenge_v1(
        challenge["challenge"], challenge["salt"], challenge["algorithm"], challenge["maxnumber"], 0
    )
    return base64.b64encode(json.dumps({**challenge, "number": solution.number}).encode()).decode()


def join_body(client, slug="air", **extra):
    challenge = client.get(f"/api/drops/{slug}/challenge").json()
    return {"altcha": solved(challenge), "fingerprint": "fp-1234567890", **extra}


def post(client, url, body):
    return client.post(
        url, json.dumps(body) if not isinstance(body, str | bytes) else body, content_type="application/json"
    )

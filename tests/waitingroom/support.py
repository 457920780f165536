"""Helpers shared by the waiting room's HTTP tests: solving proofs-of-work like the widget does."""

import base64
import json

import altcha

from waitingroom.redis_keys import queue_keys
from waitingroom.scripts import HoldState


def authorize(redis, drop, user, state=HoldState.READY):
    # What the checkout records once the shopper gave a card and its hold was placed (the queue's view).
    redis.hset(queue_keys(drop.pk).holds, user.pk, state)


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

"""Helpers shared by the waiting room's HTTP tests: solving proofs-of-work like the widget does, and calling
the lean path (``QueueFastPath``) over ASGI with a recorder in Django's place."""

import base64
import json
from datetime import timedelta

import altcha
from asgiref.sync import async_to_sync
from channels.testing import HttpCommunicator
from django.utils import timezone

from tests.conftest import BROWSER_USER_AGENT
from tests.factories import UserFactory
from waitingroom.redis_keys import queue_keys
from waitingroom.scripts import HoldState


def authorize(redis, drop, user, state=HoldState.READY):
    # What the checkout records once the shopper gave a card and its hold was placed (the queue's view).
    redis.hset(queue_keys(drop.pk).holds, user.pk, state)


def signed_in(client, redis, drop) -> dict:
    """A month-old shopper signed in on ``client`` with a card held for ``drop``: what ``call`` needs."""
    user = UserFactory(date_joined=timezone.now() - timedelta(days=30))
    client.force_login(user)
    authorize(redis, drop, user)
    csrf = client.get("/api/session").cookies["csrftoken"].value
    return {"user": user, "client": client, "csrf": csrf, "session": client.cookies["sessionid"].value}


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


class Django:
    """Stands in for Django behind the fast path, to see what falls through (answers 299)."""

    def __init__(self):
        self.calls = []

    async def __call__(self, scope, receive, send):
        message = await receive()
        self.calls.append((scope["path"], message.get("body", b"")))
        await send({"type": "http.response.start", "status": 299, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})


def call(app, method, path, *, body=b"", shopper=None, csrf=True, headers=(), user_agent=BROWSER_USER_AGENT,
         client_ip="127.0.0.1"):  # fmt: skip
    """One HTTP request to an ASGI ``app``: (status, JSON body, headers)."""
    cookie = ""
    extra = [(b"host", b"testserver")] + ([(b"user-agent", user_agent.encode())] if user_agent else [])
    if shopper:
        cookie = f"sessionid={shopper['session']}; csrftoken={shopper['csrf']}"
        if csrf:
            extra.append((b"x-csrftoken", shopper["csrf"].encode()))
    if cookie:
        extra.append((b"cookie", cookie.encode()))
    communicator = HttpCommunicator(app, method, path, body=body, headers=[*extra, *headers])
    communicator.scope["client"] = (client_ip, 50000)  # the application is called with this scope when it runs
    response = async_to_sync(communicator.get_response)(timeout=10)
    header_map = {k.decode(): v.decode() for k, v in response["headers"]}
    return response["status"], json.loads(response["body"] or b"{}"), header_map


def body_of(data):
    return json.dumps(data).encode()


class RealDjango:
    """Django's own ASGI application behind the fast path, recording the paths that fell through to it."""

    def __init__(self):
        from django.core.handlers.asgi import ASGIHandler

        self.app = ASGIHandler()
        self.calls = []

    async def __call__(self, scope, receive, send):
        self.calls.append(scope["path"])
        await self.app(scope, receive, send)

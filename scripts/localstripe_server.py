"""Run localstripe (the fake Stripe server from PyPI) the way a flash sale needs it: fast at any size.

Usage: python scripts/localstripe_server.py [--host 127.0.0.1] [--port 8420]

The same server and the same Stripe behaviour as ``localstripe --from-scratch``, with three costs
taken out that grow with every object it stores, so a drop's 100,000 card holds do not slow it
to a crawl:

* localstripe pickles its whole store to ``/tmp/localstripe.pickle`` after every write (and reads
  that file back at start, so every localstripe on the machine shares one file). Here the store
  lives in memory only and each run starts empty.
* Every list (and every charge it exports, whose ``refunds`` are a list) scans the whole store for
  the objects of one kind. Here the store also keeps an index by kind, so a list scans one kind.
* aiohttp's access log writes a line per request to stderr; it is off.

And one thing localstripe lacks is added, because the project relies on it: Stripe's idempotency keys.
A POST with an ``Idempotency-Key`` that was seen before gets the first answer again (status and body)
instead of doing the work twice, as Stripe does for 24 hours; a second request while the first is still
being answered waits for it. So a call retried after a crash (a hold placed twice with the same key)
creates one object, here as with Stripe.

Everything else (objects, ids, errors, webhooks, the ``/_config`` routes and ``/js.stripe.com``)
is localstripe's own. Used by ``make run`` (Procfile.dev), the test suite and the benchmarks.
"""

from __future__ import annotations

import argparse
import asyncio
import socket

from aiohttp import web
from localstripe import resources
from localstripe.server import app


def _kind(key: str) -> str:
    return key.split(":", 1)[0]


def _kinds(store) -> dict[str, dict]:
    try:
        return store._flashsale_kinds
    except AttributeError:
        store._flashsale_kinds = kinds = {}
        for key, value in dict.items(store):
            kinds.setdefault(_kind(key), {})[key] = value
        return kinds


def _setitem(store, key, value) -> None:
    dict.__setitem__(store, key, value)
    _kinds(store).setdefault(_kind(key), {})[key] = value


def _delitem(store, key) -> None:
    dict.__delitem__(store, key)
    _kinds(store).get(_kind(key), {}).pop(key, None)


def _clear(store) -> None:
    dict.clear(store)
    _kinds(store).clear()


@classmethod
def _list_all(cls, url, limit=None, starting_after=None, **kwargs):
    """localstripe's ``StripeObject._api_list_all``, reading the kind's index instead of the whole store."""
    if kwargs:
        raise resources.UserError(400, "Unexpected " + ", ".join(kwargs.keys()))
    listing = resources.List(url, limit=limit, starting_after=starting_after)
    listing._list = list(_kinds(resources.store).get(cls.object, {}).values())
    return listing


class IdempotentReplay:
    """Stripe's idempotency keys: the first answer to a POST with a key is the answer to every repeat."""

    def __init__(self) -> None:
        self.answers: dict[tuple[str, str], tuple[int, bytes, str]] = {}
        self.locks: dict[tuple[str, str], asyncio.Lock] = {}

    @web.middleware
    async def middleware(self, request: web.Request, handler):
        key = request.headers.get("Idempotency-Key")
        if request.method != "POST" or not key:
            return await handler(request)
        scope = (request.headers.get("Authorization", ""), key)
        async with self.locks.setdefault(scope, asyncio.Lock()):
            if scope not in self.answers:
                response = await handler(request)
                self.answers[scope] = (response.status, response.body, response.content_type)
                return response
        status, body, content_type = self.answers[scope]
        return web.Response(status=status, body=body, content_type=content_type,
                            headers={"Idempotent-Replayed": "true"})  # fmt: skip


def patch() -> None:
    """Keep the store in memory, indexed by kind (see the module's docstring)."""
    resources.Store.dump_to_disk = lambda self: None
    resources.Store.try_load_from_disk = lambda self: None
    resources.Store.__setitem__ = _setitem
    resources.Store.__delitem__ = _delitem
    resources.Store.clear = _clear
    resources.StripeObject._api_list_all = _list_all
    _kinds(resources.store)
    app.middlewares.insert(0, IdempotentReplay().middleware)  # outermost: it keeps error answers too


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8420, help="port to listen on (default 8420)")
    args = parser.parse_args(argv)
    patch()
    sock = socket.socket(socket.AF_INET6 if ":" in args.host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    web.run_app(app, sock=sock, access_log=None, print=None)


if __name__ == "__main__":
    main()

"""One simulated shopper's journey, every step over HTTP or the websocket, as a browser makes it.

Sign in, pre-authorize the card, solve the proof-of-work, join, watch the websocket until
admitted (polling ``GET .../queue`` whenever the socket is down or silent), buy. A 429 or a
503 is retried after the wait its Retry-After names (2 s when it names none: a load balancer's own 503 with
no server up), and a proxy's 408 at once, as the page does.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiohttp
from yarl import URL

from .config import SHOPPER_PASSWORD, Role, ShopperPlan
from .stats import ShopperStats

logger = logging.getLogger(__name__)

# A declined card's shopper is told "payment_required" when their turn comes near; a simulated one gives up.
DECIDED = {"admitted", "expired", "purchased", "sold_out", "payment_required"}
CONFLICTS_TO_RETRY = {"authorization_in_progress", "purchase_in_progress"}
MAX_ATTEMPTS = 30
CONFLICT_WAIT = 0.5
UNNAMED_503_WAIT = 2.0  # as the page waits after a 503 that names no Retry-After
# GET .../queue while the socket is down, as the page does: soon when admission is near, seldom when
# it is far (a fixed second would be 80,000 requests a second from the shoppers without a socket).
POLL_SECONDS = 2.0  # at least, as the page (the shopper's read limit is 120/min)
POLL_MAX_SECONDS = 30.0  # at most
POLL_ETA_SHARE = 4  # a quarter of the ETA between them: reads close in on the admission
POLL_START_SPREAD = 30.0  # pre-queued shoppers read their ticket within this long after the start
PURCHASE_WAITS, PURCHASE_WAIT_SECONDS = 30, 2.0  # a purchase in progress is asked again, as the page does
BUY_ATTEMPTS = 3  # admitted, told "not admitted" by the purchase (a lost admission), admitted again...
SILENCE_SECONDS = 5.0  # the server sends a drop frame every tick; this long without one, read the entry
POW_ATTEMPTS = 3
# The connection closed before an answer came (a kept-alive connection the server had just closed).
DROPPED_CONNECTION = (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)


def poll_wait(entry: dict, *, until_start: float) -> float:
    """Seconds until the next read of the entry: at the start (spread), then by the ETA."""
    if until_start > 0:  # the order is drawn at the start: nothing to learn before it
        return until_start + random.uniform(0.0, POLL_START_SPREAD)  # noqa: S311
    eta = entry.get("eta_seconds")
    wait = POLL_SECONDS if eta is None else min(POLL_MAX_SECONDS, max(POLL_SECONDS, eta / POLL_ETA_SHARE))
    return wait * random.uniform(0.8, 1.2)  # noqa: S311


def missed_turn(entry: dict, frame: dict) -> bool:
    """Whether a drop frame shows admission at or past a waiting entry's ticket."""
    ticket, serving = entry.get("ticket"), frame.get("serving")
    waiting = entry.get("status") == "waiting" and bool(ticket)
    return frame.get("type") == "drop" and waiting and (serving or 0) >= ticket


class Missed(Exception):
    """A position read got no answer; the shopper reads again at the next poll, as the page does."""


class JourneyOver(Exception):
    """The shopper's journey ended here; ``outcome`` says how."""

    def __init__(self, outcome: str) -> None:
        super().__init__(outcome)
        self.outcome = outcome


# Shoppers' requests go out on lanes, each with its own connections and limit: in real life
# thousands of position reads or card holds of other shoppers do not hold up one shopper's purchase.
LANES = ("reads", "purchases", "others")
LANE_OF_STEP = {"position": "reads", "purchase": "purchases"}


@dataclass
class Lane:
    connector: aiohttp.BaseConnector
    in_flight: asyncio.Semaphore


@dataclass
class Network:
    """What all shoppers share: the server, the connection pools and their limits, the solver, the counters."""

    base_url: URL
    slug: str
    lanes: dict[str, Lane]  # HTTP connections and requests in flight, by lane (see LANES)
    ws: aiohttp.BaseConnector
    fresh: aiohttp.BaseConnector  # a new connection for each request: the one resend after a dropped connection
    sockets: asyncio.Semaphore  # websockets open
    solve: Callable[[dict], Awaitable[str]]
    stats: ShopperStats
    starts_at: float  # monotonic time of the drop's start
    deadline: float  # monotonic time by which everything stops
    forwarded_for: bool
    session_cookie: str
    csrf_cookie: str

    @property
    def ws_url(self) -> URL:
        scheme = "wss" if self.base_url.scheme == "https" else "ws"
        return self.base_url.with_scheme(scheme).with_path(f"/ws/drops/{self.slug}/")


class Shopper:
    def __init__(self, plan: ShopperPlan, net: Network) -> None:
        self.plan, self.net, self.stats = plan, net, net.stats
        self.jar = aiohttp.CookieJar(unsafe=True)  # unsafe: keep cookies of an IP-address host
        self.headers = {"User-Agent": plan.user_agent, "Accept": "application/json", "Accept-Language": "en-US,en"}
        if net.forwarded_for:
            self.headers["X-Forwarded-For"] = plan.address
        self.sessions: dict[str, aiohttp.ClientSession] = {}
        self.rejoined = False

    async def run(self) -> str:
        """Make the whole journey; return how it ended."""
        self.stats.steps["arrived"] += 1
        if self.plan.session_key:
            self.jar.update_cookies({self.net.session_cookie: self.plan.session_key}, response_url=self.net.base_url)
        try:
            return await self._journey()
        except JourneyOver as over:
            return over.outcome
        finally:
            for session in self.sessions.values():
                await session.close()

    async def _journey(self) -> str:
        self.arrived = time.monotonic()
        await self._sign_in()
        await self._authorize()
        entry = await self._join()
        self.stats.placed_after.append(time.monotonic() - self.arrived)
        for attempt in range(BUY_ATTEMPTS):
            entry = await self._wait_until_decided(entry)
            if entry["status"] == "payment_required":
                return "declined"
            if entry["status"] != "admitted":
                return entry["status"]
            if attempt == 0:
                self.stats.steps["admitted"] += 1
            if self.plan.role is Role.NO_BUY:
                return "admitted_did_not_buy"
            outcome = await self._buy()
            if outcome != "not_admitted":
                return outcome
            # Not admitted after all: an admission Redis lost in its last unsaved second. The place is kept
            # and the tick admits the ticket again; read the entry and wait, as the page does.
            entry = await self._read_entry({"status": "waiting"})
        return "not_admitted"

    # --- steps ------------------------------------------------------------------------------

    async def _sign_in(self) -> None:
        status, body = await self._call("session", "GET", "/api/session")
        if not self.plan.session_key:
            status, body = await self._call(
                "sign_in", "POST", "/api/session", body={"username": self.plan.username, "password": SHOPPER_PASSWORD}
            )
        if status != 200 or not body.get("authenticated"):
            raise JourneyOver("not_signed_in")
        self.stats.steps["signed_in"] += 1

    async def _authorize(self) -> None:
        status, body = await self._call(
            "authorization",
            "POST",
            f"/api/drops/{self.net.slug}/authorization",
            body={"payment_method": self.plan.card},
        )
        if status in (200, 201, 202) and body.get("status") in ("scheduled", "authorized"):
            return  # the card is kept; its hold is placed in queue order
        if status in (200, 201) and body.get("status") == "requires_action":
            raise JourneyOver("requires_action")
        if _code(body) == "drop_closed":
            self.stats.placed_after.append(time.monotonic() - self.arrived)  # the sold-out answer
        raise JourneyOver({"card_declined": "declined", "drop_closed": "sold_out"}.get(_code(body), _outcome(body)))

    async def _join(self) -> dict:
        path = f"/api/drops/{self.net.slug}/queue"
        for _ in range(POW_ATTEMPTS):
            status, challenge = await self._call("challenge", "GET", f"/api/drops/{self.net.slug}/challenge")
            if status != 200:
                raise JourneyOver(_outcome(challenge))
            payload = await self.net.solve(challenge)
            body = {"altcha": payload, "fingerprint": self.plan.fingerprint, "signals": self.plan.signals}
            self.stats.joins_attempted += 1
            status, entry = await self._call("join", "POST", path, body=body)
            self.stats.joins_answered += 1
            if status in (200, 201):
                self.stats.steps["joined"] += 1
                return entry
            if _code(entry) == "sold_out":
                self.stats.placed_after.append(time.monotonic() - self.arrived)  # the sold-out answer
            if _code(entry) not in ("pow_invalid", "pow_replayed"):
                break
        raise JourneyOver({"bot_suspected": "refused_as_bot"}.get(_code(entry), _outcome(entry)))

    async def _wait_until_decided(self, entry: dict) -> dict:
        """Wait on the websocket (or by polling when no socket is free or it drops) until admitted or out."""
        while entry["status"] not in DECIDED:
            if self.net.sockets.locked():
                self.stats.sockets["no_free_slot"] += 1
                return await self._poll(entry)
            async with self.net.sockets:
                watched = await self._watch(entry)
            if watched is not None:
                return watched
            entry = await self._poll(entry)
        return entry

    async def _watch(self, entry: dict) -> dict | None:
        """Listen to the drop's websocket; return the deciding entry, or None when the socket failed."""
        async with aiohttp.ClientSession(connector=self.net.ws, connector_owner=False, cookie_jar=self.jar) as ws_http:
            try:
                ws = await ws_http.ws_connect(
                    self.net.ws_url,
                    headers={"Origin": str(self.net.base_url), "User-Agent": self.plan.user_agent},
                    heartbeat=None,
                    autoclose=True,
                )
            except aiohttp.WSServerHandshakeError as exc:
                self.stats.sockets[f"refused {exc.status}"] += 1
                return None
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                self.stats.sockets[f"failed {type(exc).__name__}"] += 1
                return None
            self.stats.sockets["opened"] += 1
            try:
                return await self._listen(ws, entry)
            finally:
                await ws.close()

    async def _listen(self, ws: aiohttp.ClientWebSocketResponse, last: dict) -> dict | None:
        read_at = 0.0
        while True:
            now = time.monotonic()
            if now >= self.net.deadline:
                raise JourneyOver("timed_out")
            silence = max(SILENCE_SECONDS, self.net.starts_at - now + SILENCE_SECONDS)
            try:
                message = await ws.receive(timeout=min(silence, self.net.deadline - now))
            except (aiohttp.ClientError, ConnectionError):  # closed under us (answering a ping, say)
                self.stats.sockets["dropped"] += 1
                return None
            except TimeoutError:
                self.stats.sockets["silent"] += 1
                last = await self._read_entry(last)
                if last["status"] in DECIDED:
                    return last
                continue
            if message.type is not aiohttp.WSMsgType.TEXT:
                if message.type not in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED):
                    self.stats.sockets[f"unexpected {message.type.name}"] += 1
                self.stats.sockets["dropped"] += 1
                return None
            frame = json.loads(message.data)
            if frame.get("type") == "entry" and frame.get("status") in DECIDED:
                return frame
            if frame.get("type") == "drop" and frame.get("state") in ("sold_out", "ended"):
                # Final: no unit is free and none is held, so none can come back to the stock.
                return {"status": frame["state"]}
            if missed_turn(last, frame) and time.monotonic() - read_at >= POLL_SECONDS:
                # Admission reached this ticket and no entry frame said so (sent while this node's
                # subscriber was reconnecting, say): read the entry, as the page does.
                read_at = time.monotonic()
                last = await self._read_entry(last)
                if last["status"] in DECIDED:
                    return last

    async def _poll(self, entry: dict) -> dict:
        while entry["status"] not in DECIDED:
            wait = poll_wait(entry, until_start=self.net.starts_at - time.monotonic())
            if time.monotonic() + wait >= self.net.deadline:
                raise JourneyOver("timed_out")
            await asyncio.sleep(wait)
            entry = await self._read_entry(entry)
        return entry

    async def _read_entry(self, last: dict) -> dict:
        """Read the entry; when the read gets no answer, keep ``last`` and read again later, as the page does."""
        self.stats.sockets["polls"] += 1
        try:
            status, entry = await self._call("position", "GET", f"/api/drops/{self.net.slug}/queue", missable=True)
        except Missed:
            return last
        if status == 404 and _code(entry) == "not_in_queue" and not self.rejoined:
            # The place was lost with Redis (a join the last second's save missed): join again, as the page does.
            self.rejoined = True
            self.stats.steps["joined_again"] += 1
            return await self._join()
        if status != 200:
            raise JourneyOver(_outcome(entry))
        return entry

    async def _buy(self) -> str:
        key = f"sim:{self.net.slug}:{self.plan.username}"
        for _ in range(PURCHASE_WAITS):
            status, body = await self._call(
                "purchase", "POST", f"/api/drops/{self.net.slug}/purchase", body={}, headers={"Idempotency-Key": key}
            )
            if _code(body) != "purchase_in_progress":
                break
            # This purchase is still being finished (it was in flight when the store went away): the settle
            # sweeper ends it as paid or refunded; the same purchase asked again then answers with its order.
            await asyncio.sleep(PURCHASE_WAIT_SECONDS)
        if status in (200, 201):
            order = body["order"]
            if order["status"] != "paid":
                return f"order_{order['status']}"
            self.stats.paid_units += order["quantity"]
            self.stats.steps["bought"] += 1
            return "bought"
        return {"payment_failed": "payment_failed", "sold_out": "sold_out_at_checkout"}.get(_code(body), _outcome(body))

    # --- HTTP ---------------------------------------------------------------------------------

    async def _call(
        self,
        step: str,
        method: str,
        path: str,
        *,
        body: dict | None = None,
        headers: dict | None = None,
        missable: bool = False,
    ) -> tuple[int, dict]:
        """Send a request (again after a 429/503 with Retry-After, or a conflict); return the status and JSON.

        A request that gets no answer ends the journey, unless it is ``missable`` (a poll the page
        simply makes again later): then it is counted as missed and ``Missed`` is raised.
        """
        extra = dict(headers or {})
        resent = False
        for attempt in range(1, MAX_ATTEMPTS + 1):
            if method != "GET":
                extra["X-CSRFToken"] = self._csrf_token()
            lane = LANE_OF_STEP.get(step, "others")
            http = self._session(lane, fresh=resent)
            async with self.net.lanes[lane].in_flight:
                started = time.monotonic()
                try:
                    async with http.request(method, self.net.base_url.with_path(path), json=body, headers=extra) as r:
                        status, raw, retry_after = r.status, await r.read(), r.headers.get("Retry-After")
                except DROPPED_CONNECTION as exc:
                    if resent or attempt == MAX_ATTEMPTS:
                        raise self._unanswered(step, exc, missable=missable) from None
                    # As a browser does when a kept-alive connection is closed under a request: send it
                    # once more on a new one, not on another idle one that may be closing too (every
                    # step is safe to repeat: the API answers a repeat).
                    self.stats.resent[f"{step}: {type(exc).__name__}"] += 1
                    resent = True
                    continue
                except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                    raise self._unanswered(step, exc, missable=missable) from None
                elapsed = time.monotonic() - started
            data = _json(raw)
            code = _code(data) or ("ok" if status < 300 else "no_error_code")
            self.stats.response(step, status, code, elapsed)
            wait = _retry_wait(status, code, retry_after)
            if wait is None or attempt == MAX_ATTEMPTS:
                return status, data
            if time.monotonic() + wait >= self.net.deadline:
                raise JourneyOver("timed_out")
            await asyncio.sleep(wait)
        raise AssertionError("unreachable")

    def _unanswered(self, step: str, exc: BaseException, *, missable: bool) -> Exception:
        if missable:
            self.stats.missed[f"{step}: {type(exc).__name__}"] += 1
            return Missed()
        self.stats.no_answer(step, exc)
        return JourneyOver(f"no_answer_{step}")

    def _session(self, lane: str, *, fresh: bool = False) -> aiohttp.ClientSession:
        key = "fresh" if fresh else lane
        session = self.sessions.get(key)
        if session is None:  # one per lane (and one on new connections), all with this shopper's cookies
            session = self.sessions[key] = aiohttp.ClientSession(
                connector=self.net.fresh if fresh else self.net.lanes[lane].connector, connector_owner=False,
                cookie_jar=self.jar, headers=self.headers,
            )  # fmt: skip
        return session

    def _csrf_token(self) -> str:
        cookie = self.jar.filter_cookies(self.net.base_url).get(self.net.csrf_cookie)
        return cookie.value if cookie else ""


def _retry_wait(status: int, code: str, retry_after: str | None) -> float | None:
    if code in CONFLICTS_TO_RETRY:
        return CONFLICT_WAIT
    if status == 408:  # a proxy's "request timeout": the request never reached a server
        return 0.1
    if status == 503 and not retry_after:
        return UNNAMED_503_WAIT
    if status in (429, 503):
        try:
            return max(0.1, float(retry_after or 1))
        except ValueError:
            return 1.0
    return None


def _json(raw: bytes) -> dict:
    try:
        data = json.loads(raw) if raw else {}
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _code(body: dict) -> str:
    error = body.get("error")
    return error.get("code", "") if isinstance(error, dict) else ""


def _outcome(body: dict) -> str:
    return _code(body) or "unexpected_answer"


def pow_solve(challenge: dict) -> str:
    """Solve an ALTCHA v1 challenge and return the widget's base64 payload (CPU only; picklable)."""
    import altcha

    solution = altcha.solve_challenge_v1(
        challenge["challenge"], challenge["salt"], challenge["algorithm"], challenge["maxnumber"], 0
    )
    payload = {
        "algorithm": challenge["algorithm"],
        "challenge": challenge["challenge"],
        "number": solution.number if solution else -1,
        "salt": challenge["salt"],
        "signature": challenge["signature"],
    }
    return base64.b64encode(json.dumps(payload).encode()).decode()

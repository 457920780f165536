"""Prove that `make run` serves shoppers on a fresh machine: what CI runs before the test suite.

Usage: python3 scripts/run_check.py [--keep]

1. Clones this repository's HEAD twice into a temporary folder (nothing of this tree is reused:
   no virtualenv, no database, no ``var/``).
2. Starts ``make run`` in the first clone with the defaults (it creates a virtualenv with the local
   lock file only, no test requirements), waits for ``/healthz``, then checks for a while that
   every process (web, worker, beat, localstripe) is still up and that nothing in the log says a
   process crashed.
3. Starts a second ``make run`` beside it (another ``PORT``, Redis database, localstripe port and
   SQLite file) and checks that the two do not see each other: each serves its own drops, and
   neither hears the other's live updates.
4. Walks one shopper through the whole path against the first (sign up, card, proof-of-work,
   join, admitted, bought), then runs a small ``simulate_drop`` against it.
5. Stops both with Ctrl-C (SIGINT), as a person would, and checks that they stopped.

Exits non-zero with the reason and the end of the log when any step fails. The shopper's walk runs
in the clone's own virtualenv (``--walk URL``: it needs the ALTCHA library to solve the challenge).
"""

from __future__ import annotations

import argparse
import base64
import http.cookiejar
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROCESSES = ("web", "worker", "ticker", "beat", "stripe")
# What honcho, scripts/respawn.sh (which starts a process again after it ended) or a Python process prints
# when something died.
CRASHED = re.compile(r"exited with code|respawn: |Traceback \(most recent call last\)|ModuleNotFoundError|"
                     r"ImportError|Address already in use|CRITICAL")  # fmt: skip
STAY_UP_SECONDS = 25


class CheckFailed(Exception):
    pass


# --- A shopper, over HTTP (stdlib only, plus altcha in --walk) --------------------------------------


class Browser:
    """A cookie-keeping JSON client that sends the CSRF token as the page does."""

    def __init__(self, base: str) -> None:
        self.base = base.rstrip("/")
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))

    def call(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        csrf = next((c.value for c in self.jar if c.name == "csrftoken"), "")
        request = urllib.request.Request(  # noqa: S310 - the local server under test
            self.base + path,
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Content-Type": "application/json", "X-CSRFToken": csrf, "Accept": "application/json",
                     "User-Agent": "Mozilla/5.0 (X11; Linux x86_64; rv:143.0) Gecko/20100101 Firefox/143.0",
                     "Accept-Language": "en-US,en"},
        )  # fmt: skip
        try:
            with self.opener.open(request, timeout=30) as response:
                raw = response.read()
                return response.status, json.loads(raw) if raw else {}
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                return exc.code, json.loads(raw)
            except ValueError:
                return exc.code, {"raw": raw[:200].decode(errors="replace")}


def expect(what: str, answer: tuple[int, dict], *statuses: int) -> dict:
    status, body = answer
    if status not in statuses:
        raise CheckFailed(f"{what}: expected {statuses}, got {status} {body}")
    print(f"  {what}: {status}", flush=True)
    return body


def solve(challenge: dict) -> str:
    import altcha  # the clone's virtualenv has it (a runtime requirement)

    solution = altcha.solve_challenge_v1(
        challenge["challenge"], challenge["salt"], challenge["algorithm"], challenge["maxnumber"], 0
    )
    payload = {key: challenge[key] for key in ("algorithm", "challenge", "salt", "signature")}
    payload["number"] = solution.number
    return base64.b64encode(json.dumps(payload).encode()).decode()


def shopper_walk(base: str, slug: str) -> None:
    """Sign up, give a card, join, wait for admission, buy; raise CheckFailed at the first wrong answer."""
    shopper = Browser(base)
    expect("session", shopper.call("GET", "/api/session"), 200)
    name = f"walker{int(time.time())}"
    expect("sign up", shopper.call("POST", "/api/shoppers", {"username": name, "email": f"{name}@example.com",
                                                              "password": "a long walk 2026"}), 201)  # fmt: skip
    api = f"/api/drops/{slug}"
    card = expect("card", shopper.call("POST", f"{api}/authorization", {"payment_method": "pm_card_visa"}), 201, 202)
    if card["status"] not in ("scheduled", "authorized"):
        raise CheckFailed(f"card: status {card['status']}")
    challenge = expect("challenge", shopper.call("GET", f"{api}/challenge"), 200)
    body = {"altcha": solve(challenge), "fingerprint": f"run-check-{name}",
            "signals": {"webdriver": False, "headless": False, "languages": 2}}  # fmt: skip
    entry = expect("join", shopper.call("POST", f"{api}/queue", body), 201)
    deadline = time.monotonic() + 90
    while entry["status"] != "admitted":
        if entry["status"] not in ("prequeue", "waiting") or time.monotonic() > deadline:
            raise CheckFailed(f"waiting for admission: entry {entry}")
        time.sleep(1)
        entry = expect("position", shopper.call("GET", f"{api}/queue"), 200)
    order = expect("buy", shopper.call("POST", f"{api}/purchase", {}), 201)["order"]
    if order["status"] != "paid":
        raise CheckFailed(f"buy: order {order}")
    orders = expect("orders", shopper.call("GET", "/api/orders"), 200)["orders"]
    if [o["id"] for o in orders] != [order["id"]]:
        raise CheckFailed(f"orders: {orders}")


# --- make run, from a clean clone --------------------------------------------------------------------


class Instance:
    def __init__(self, name: str, folder: Path, env: dict[str, str]) -> None:
        self.name, self.folder, self.env = name, folder, {**os.environ, **env}
        self.port = int(env["PORT"])
        self.log_path = folder.parent / f"{name}.log"
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.log = self.log_path.open("w")
        self.process = subprocess.Popen(
            ["make", "run"], cwd=self.folder, env=self.env, stdout=self.log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip

    def text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else "(not started)"

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.text().splitlines()[-lines:])

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/healthz", timeout=5) as response:  # noqa: S310
                return response.status == 200
        except (OSError, urllib.error.URLError):
            return False

    def wait_healthy(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self.healthy():
            if self.process.poll() is not None:
                raise CheckFailed(f"{self.name}: make run exited with {self.process.returncode} before serving")
            if time.monotonic() > deadline:
                raise CheckFailed(f"{self.name}: /healthz did not answer 200 within {seconds:.0f} s")
            time.sleep(1)

    def check_alive(self) -> None:
        text = self.text()
        if self.process.poll() is not None:
            raise CheckFailed(f"{self.name}: make run exited with {self.process.returncode}")
        for process in PROCESSES:
            if not re.search(rf"{process}\.1\s+\| .*started|system\s+\| {process}\.1 started", text):
                raise CheckFailed(f"{self.name}: honcho did not start {process}")
        crashed = CRASHED.search(text)
        if crashed:
            raise CheckFailed(f"{self.name}: the log says a process crashed ({crashed.group(0)!r})")
        if not self.healthy():
            raise CheckFailed(f"{self.name}: /healthz stopped answering")

    def manage(self, *args: str) -> str:
        done = subprocess.run(
            [str(self.folder / ".venv/bin/python"), "manage.py", *args], cwd=self.folder, env=self.env,
            capture_output=True, text=True, timeout=600, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise CheckFailed(f"{self.name}: manage.py {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
        return done.stdout

    def walk(self, slug: str) -> None:
        done = subprocess.run(
            [str(self.folder / ".venv/bin/python"), "scripts/run_check.py", "--walk", self.url, "--slug", slug],
            cwd=self.folder, env=self.env, capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
        print(done.stdout, end="", flush=True)
        if done.returncode != 0:
            raise CheckFailed(f"{self.name}: the shopper's walk failed:\n{done.stderr}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGINT)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
            raise CheckFailed(f"{self.name}: did not stop within 30 s of Ctrl-C") from None
        finally:
            self.log.close()


def frames_heard(url: str, slug: str, seconds: float) -> list[dict]:
    """The websocket frames a newly signed-up shopper on the drop's page receives in ``seconds``."""
    import asyncio

    import websockets

    visitor = Browser(url)
    visitor.call("GET", "/api/session")  # the CSRF cookie
    name = f"listener{int(time.time())}"
    status, body = visitor.call("POST", "/api/shoppers", {"username": name, "email": f"{name}@example.com",
                                                          "password": "a long listen 2026"})  # fmt: skip
    if status != 201:
        raise CheckFailed(f"sign up on {url}: {status} {body}")
    cookies = "; ".join(f"{c.name}={c.value}" for c in visitor.jar)

    async def listen() -> list[dict]:
        frames = []
        headers = {"Cookie": cookies, "Origin": url}
        async with websockets.connect(url.replace("http", "ws", 1) + f"/ws/drops/{slug}/",
                                      additional_headers=headers) as socket:  # fmt: skip
            try:
                async with asyncio.timeout(seconds):
                    async for message in socket:
                        frames.append(json.loads(message))
            except TimeoutError:
                pass
        return frames

    return asyncio.run(listen())


def side_by_side(first: Instance, second: Instance) -> None:
    """Each instance serves only its own drops, and its live updates reach only its own pages.

    Both databases are new, so the drops made here have the same id in both: without a pub/sub
    channel of its own, the second's page would also hear the first's frames (7 left, not 3).
    """
    first.manage("schedule_drop", "--slug", "only-first", "--title", "First", "--price", "10.00", "--quantity", "7")
    second.manage("schedule_drop", "--slug", "only-second", "--title", "Second", "--price", "10.00", "--quantity", "3")
    for owner, other, slug in ((first, second, "only-first"), (second, first, "only-second")):
        if Browser(owner.url).call("GET", f"/api/drops/{slug}")[0] != 200:
            raise CheckFailed(f"{owner.name} does not serve its own drop {slug}")
        if Browser(other.url).call("GET", f"/api/drops/{slug}")[0] != 404:
            raise CheckFailed(f"{other.name} serves {owner.name}'s drop {slug}")
    done = subprocess.run(
        [str(first.folder / ".venv/bin/python"), "scripts/run_check.py", "--listen", second.url,
         "--slug", "only-second", "--seconds", "5"],
        cwd=first.folder, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise CheckFailed(f"listening to {second.name}'s drop failed: {done.stderr}")
    frames = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    remaining = {frame.get("remaining") for frame in frames if frame.get("type") == "drop"}
    if remaining != {3}:
        raise CheckFailed(f"{second.name}'s page should hear only its own drop (3 left), heard {sorted(remaining)}")
    print(f"  side by side: each serves its own drops; {len(frames)} live frames heard, none of the other's",
          flush=True)  # fmt: skip


def run_check(keep: bool) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="flashsale-run-check-"))
    instances: list[Instance] = []
    try:
        for name in ("first", "second"):
            subprocess.run(["git", "clone", "--quiet", "--no-hardlinks", str(ROOT), str(workdir / name)], check=True)
        base_redis = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0").rsplit("/", 1)[0]
        first = Instance("first", workdir / "first", {"PORT": os.environ.get("PORT", "8000")})
        second = Instance(
            "second",
            workdir / "second",
            {"PORT": "8010", "REDIS_URL": f"{base_redis}/1", "LOCALSTRIPE_PORT": "8430",
             "DATABASE_URL": f"sqlite:///{workdir / 'second.sqlite3'}"},
        )  # fmt: skip
        instances = [first, second]
        print(f"== make run in a fresh clone ({first.folder})", flush=True)
        first.start()
        first.wait_healthy(600)
        print(f"  /healthz answered; watching the processes for {STAY_UP_SECONDS} s", flush=True)
        second.start()
        time.sleep(STAY_UP_SECONDS)
        first.check_alive()
        print(f"  {', '.join(PROCESSES)} are up; no crash in the log", flush=True)
        print("== a second make run beside it", flush=True)
        second.wait_healthy(600)
        second.check_alive()
        side_by_side(first, second)
        print("== one shopper, the whole path", flush=True)
        first.manage("schedule_drop", "--slug", "run-check", "--title", "Run check", "--price", "10.00",
                     "--quantity", "5", "--starts-in", "5", "--prequeue", "5", "--rate", "5")  # fmt: skip
        first.walk("run-check")
        print("== simulate_drop, small", flush=True)
        out = first.manage("simulate_drop", "--url", first.url, "--shoppers", "40", "--units", "10", "--rate", "10",
                           "--timeout", "180", "--settle", "60", "--no-progress")  # fmt: skip
        print("\n".join(f"  {line}" for line in out.splitlines()), flush=True)
        first.check_alive()
        second.check_alive()
        print("== stopping (Ctrl-C)", flush=True)
        for instance in instances:
            instance.stop()
        print("run check passed", flush=True)
    except CheckFailed as exc:
        for instance in instances:
            print(f"--- end of {instance.name}'s log ({instance.log_path})\n{instance.tail()}", file=sys.stderr)
        raise SystemExit(f"run check FAILED: {exc}") from None
    finally:
        for instance in instances:
            try:
                instance.stop()
            except CheckFailed as exc:
                print(exc, file=sys.stderr)
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", action="store_true", help="keep the clones and logs")
    parser.add_argument("--walk", metavar="URL", help="(internal) walk one shopper through the drop at URL")
    parser.add_argument("--listen", metavar="URL", help="(internal) print the drop's websocket frames at URL")
    parser.add_argument("--slug", default="run-check")
    parser.add_argument("--seconds", type=float, default=4.0)
    args = parser.parse_args()
    if args.walk:
        try:
            shopper_walk(args.walk, args.slug)
        except CheckFailed as exc:
            raise SystemExit(str(exc)) from None
    elif args.listen:
        for frame in frames_heard(args.listen, args.slug, args.seconds):
            print(json.dumps(frame))
    else:
        run_check(args.keep)


if __name__ == "__main__":
    main()

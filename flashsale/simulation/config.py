"""What a simulation runs (``SimulationConfig``) and who each simulated shopper is (``ShopperPlan``)."""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass

ARRIVALS = ("burst", "prequeue")
SIGN_INS = ("session", "password")
SHOPPER_PASSWORD = "simulated shopper 2026"  # noqa: S105 - the simulated accounts' shared password

CARD = "pm_card_visa"
# Declined when its hold is placed (localstripe declines pm_card_visa_chargeDeclined only when a card is
# attached to a customer, which holds placed in queue order never do).
DECLINED_CARDS = ("pm_card_chargeCustomerFail",)

BROWSER_AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/141.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_6) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.0 Safari/605.1",
    "Mozilla/5.0 (X11; Linux x86_64; rv:143.0) Gecko/20100101 Firefox/143.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
)
BOT_AGENTS = ("python-requests/2.32.3", "Python/3.11 aiohttp/3.14")
BROWSER_SIGNALS = {"webdriver": False, "headless": False, "languages": 2}
BOT_SIGNALS = {"webdriver": True, "headless": True, "languages": 0}
# Bots run from a handful of machines: few fingerprints, few addresses.
BOT_FINGERPRINTS = ("scripted-device-a", "scripted-device-b")
BOT_ADDRESSES = ("198.51.100.7", "198.51.100.8", "198.51.100.9")


class Role(enum.StrEnum):
    BUYER = "buyer"  # buys when admitted
    NO_BUY = "no_buy"  # queues, is admitted, never buys
    DECLINED = "declined"  # the card is declined at the authorization
    BOT = "bot"  # a script: automation user agent, webdriver on, shared fingerprint and address


@dataclass(frozen=True)
class SimulationConfig:
    url: str
    shoppers: int = 100_000
    units: int = 1_000
    arrival: str = "burst"
    prequeue_seconds: float = 30.0
    burst_seconds: float = 1.0  # with arrival "burst": everyone arrives within this many seconds of the start
    bots: float = 0.0
    declined: float = 0.0
    no_buy: float = 0.0
    rate: int = 500
    checkout_window: int = 60
    cap_multiple: int = 3  # the drop's cap on unfinished admissions, times the free stock
    accounts_per_card: int = 0  # the drop's limit; 0: every shopper (all test cards share one fingerprint)
    concurrency: int = 500
    sockets: int = 10_000
    timeout: float = 1800.0
    settle: float = 90.0
    tick_locally: bool = False
    sign_in: str = "session"
    forwarded_for: bool = False
    slug: str = ""
    prefix: str = "sim"
    seed: int | None = None
    solvers: int = 0
    progress: bool = True

    def __post_init__(self) -> None:
        if self.shoppers < 1 or self.units < 1:
            raise ValueError("--shoppers and --units must be at least 1")
        for name in ("bots", "declined", "no_buy"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"--{name.replace('_', '-')} is a share between 0.0 and 1.0")
        if self.bots + self.declined + self.no_buy > 1.0:
            raise ValueError("--bots, --declined and --no-buy add up to more than 1.0")
        if self.arrival not in ARRIVALS:
            raise ValueError(f"--arrival is one of {', '.join(ARRIVALS)}")
        if self.sign_in not in SIGN_INS:
            raise ValueError(f"--sign-in is one of {', '.join(SIGN_INS)}")
        if self.concurrency < 1 or self.rate < 1 or self.cap_multiple < 1 or self.checkout_window < 10:
            raise ValueError("--concurrency, --rate and --cap-multiple must be at least 1, --checkout-window 10")
        if self.timeout <= 0:
            raise ValueError("--timeout must be positive")
        if self.burst_seconds <= 0:
            raise ValueError("--burst must be positive")


@dataclass(frozen=True)
class ShopperPlan:
    index: int
    username: str
    role: Role
    card: str
    user_agent: str
    signals: dict
    fingerprint: str
    address: str  # sent as X-Forwarded-For with --forwarded-for
    arrives_at: float  # seconds after the arrivals begin
    session_key: str = ""  # a ready signed-in session (--sign-in session)


def shoppers_plan(config: SimulationConfig) -> list[ShopperPlan]:
    """Give every shopper a role, a card, a browser (or a script) and an arrival time."""
    rng = random.Random(config.seed)  # noqa: S311 - a simulation's dice, not secrets
    n = config.shoppers
    bots = round(n * config.bots)
    declined = round(n * config.declined)
    no_buy = round(n * config.no_buy)
    roles = [Role.BOT] * bots + [Role.DECLINED] * declined + [Role.NO_BUY] * no_buy
    roles += [Role.BUYER] * (n - len(roles))
    rng.shuffle(roles)
    window = config.burst_seconds if config.arrival == "burst" else config.prequeue_seconds
    plans, humans, scripts = [], 0, 0
    for index, role in enumerate(roles):
        arrives_at = rng.uniform(0, window)
        if role is Role.BOT:
            plans.append(
                ShopperPlan(
                    index=index,
                    username=f"{config.prefix}bot{scripts}",
                    role=role,
                    card=CARD,
                    user_agent=BOT_AGENTS[scripts % len(BOT_AGENTS)],
                    signals=BOT_SIGNALS,
                    fingerprint=BOT_FINGERPRINTS[scripts % len(BOT_FINGERPRINTS)],
                    address=BOT_ADDRESSES[scripts % len(BOT_ADDRESSES)],
                    arrives_at=arrives_at,
                )
            )
            scripts += 1
            continue
        card = DECLINED_CARDS[humans % len(DECLINED_CARDS)] if role is Role.DECLINED else CARD
        plans.append(
            ShopperPlan(
                index=index,
                username=f"{config.prefix}{humans}",
                role=role,
                card=card,
                user_agent=BROWSER_AGENTS[humans % len(BROWSER_AGENTS)],
                signals=BROWSER_SIGNALS,
                fingerprint=f"browser-{config.prefix}-{humans:08d}",
                address=f"10.{(humans >> 16) & 255}.{(humans >> 8) & 255}.{humans & 255}",
                arrives_at=arrives_at,
            )
        )
        humans += 1
    return plans

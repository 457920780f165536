"""What the shoppers saw, counted in the simulation's event loop (one thread: no locks)."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field


def percentile(values: list[float], q: float) -> float | None:
    """Return the ``q``-th percentile (nearest rank) of ``values``, or None when there are none."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


@dataclass
class ShopperStats:
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))  # step -> seconds
    errors: Counter = field(default_factory=Counter)  # "402 card_declined" -> count, every non-2xx
    server_errors: Counter = field(default_factory=Counter)  # "step 503 code" -> count
    unanswered: Counter = field(default_factory=Counter)  # "step: ExceptionName" -> requests with no answer
    missed: Counter = field(default_factory=Counter)  # "step: ExceptionName" -> polls unanswered, read again later
    resent: Counter = field(default_factory=Counter)  # "step: ExceptionName" -> sent again on a new connection
    outcomes: Counter = field(default_factory=Counter)  # how each shopper's journey ended
    outcomes_by_role: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))  # role -> outcomes
    steps: Counter = field(default_factory=Counter)  # progress: arrived, signed_in, joined, admitted, bought
    sockets: Counter = field(default_factory=Counter)  # opened, dropped, refused, polls, no_slot
    loop_lag: list[float] = field(default_factory=list)  # seconds the simulation's event loop woke late
    # seconds from a shopper's arrival to their place in the queue (or the sold-out answer)
    placed_after: list[float] = field(default_factory=list)
    joins_attempted: int = 0
    joins_answered: int = 0
    paid_units: int = 0  # units in orders the API answered as paid

    def response(self, step: str, status: int, code: str, seconds: float) -> None:
        self.latencies[step].append(seconds)
        if status >= 300:
            self.errors[f"{status} {code}"] += 1
        if status >= 500:
            self.server_errors[f"{step} {status} {code}"] += 1

    def no_answer(self, step: str, exc: BaseException) -> None:
        self.unanswered[f"{step}: {type(exc).__name__}"] += 1

    def latency_summary(self) -> dict[str, dict]:
        return {
            step: {
                "count": len(values),
                "p50_ms": _ms(percentile(values, 50)),
                "p99_ms": _ms(percentile(values, 99)),
                "max_ms": _ms(max(values)),
            }
            for step, values in sorted(self.latencies.items())
        }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)

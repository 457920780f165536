"""The simulation's figures: what the shoppers saw beside what the database and Redis hold at the end."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings

from inventory.models import Drop
from inventory.selectors import orders_by_status, stock_agrees, stock_get
from payments.selectors import authorization_counts, stripe_calls_get
from waitingroom.selectors import bot_stats_get

from .beat import Sample
from .config import SimulationConfig
from .stats import ShopperStats, percentile

OPEN_AUTHORIZATIONS = ("scheduled", "requires_action", "authorized")


@dataclass(frozen=True)
class RunTimes:
    arrivals_began: float  # monotonic
    starts_at: float  # monotonic time of the drop's start
    shoppers_done: float
    ended: float
    timed_out: bool
    unfinished: int  # shoppers still on their way when the timeout struck


def admission_rate_measure(samples: list[Sample], *, cap_multiple: int, rate: int) -> dict:
    """Measure admissions per second from the samples of ``serving``.

    Admission moves in steps, one per tick, so a rate is measured from one step to a later one:
    the tickets admitted by the steps after the first, over the time between the first and the
    last. ``free_flow`` does that within each stretch in which nothing but the rate held
    admission back (more than a second's worth of tickets waited and the cap, ``cap_multiple`` x
    free stock minus the admitted, had room for more than a second's worth); ``while_moving``
    does it from the queue's first step to its last, whatever held it back in between.

    The time between two steps is read on the Redis clock of the ticks that made them (the
    sampler reads ``serving`` and the tick's time in one transaction), so a quarter-second
    sampling period does not blur a stretch of a few ticks; ``free_flow_sampled`` is the same
    measure on the sampler's own clock.
    """
    steps = [after for before, after in itertools.pairwise(samples) if after.serving > before.serving]
    stretches: list[list[Sample]] = []
    stretch: list[Sample] = []
    for before, after in itertools.pairwise(samples):
        backlog = after.last_ticket - after.serving
        room = cap_multiple * (after.stock or 0) - after.admitted
        if backlog > rate and room > rate:
            if after.serving > before.serving:
                stretch.append(after)
            continue
        stretches.append(stretch)
        stretch = []
    stretches.append(stretch)
    stretches = [found for found in stretches if len(found) > 1]

    def per_second(runs: list[list[Sample]], clock: Callable[[Sample], float]) -> tuple[float | None, float]:
        admitted = sum(run[-1].serving - run[0].serving for run in runs)
        seconds = sum(clock(run[-1]) - clock(run[0]) for run in runs)
        return (round(admitted / seconds, 1) if seconds > 0 else None), round(seconds, 1)

    def on_tick_clock(sample: Sample) -> float:
        return sample.at if sample.tick_at is None else sample.tick_at

    free_flow, free_seconds = per_second(stretches, on_tick_clock)
    sampled, sampled_seconds = per_second(stretches, lambda sample: sample.at)
    moving, moving_seconds = per_second([steps] if len(steps) > 1 else [], on_tick_clock)
    return {
        "setting": rate,
        "free_flow": free_flow,
        "free_flow_seconds": free_seconds,
        "free_flow_ticks": sum(len(run) - 1 for run in stretches),
        "free_flow_sampled": sampled,
        "free_flow_sampled_seconds": sampled_seconds,
        "while_moving": moving,
        "while_moving_seconds": moving_seconds,
    }


def sell_out_seconds(samples: list[Sample], *, starts_at: float) -> float | None:
    """Seconds from the drop's start to the first sample with no unit free and none held."""
    for sample in samples:
        if sample.stock == 0 and sample.holds == 0:
            return round(max(0.0, sample.at - starts_at), 2)
    return None


def report_build(
    *,
    config: SimulationConfig,
    drop: Drop,
    stats: ShopperStats,
    samples: list[Sample],
    times: RunTimes,
    beat_failures: int | None,
) -> dict:
    """Gather the report; ``ok`` is False when a unit was oversold, a 5xx came back or a request went unanswered."""
    drop.refresh_from_db()
    stock = stock_get(drop=drop)
    authorizations = authorization_counts(drop_id=drop.pk)
    orders = orders_by_status(drop=drop)
    bots = bot_stats_get(drop_id=drop.pk)
    paid_units = max(stock.sold, stock.redis_sold, stats.paid_units)
    oversold = max(0, paid_units + stock.pending - drop.quantity)
    free = stock.redis if stock.redis is not None else stock.database
    joins = stats.latencies.get("join", [])
    server_errors = sum(stats.server_errors.values())
    unanswered = sum(stats.unanswered.values())
    report = {
        "drop": drop.slug,
        "url": config.url,
        "shoppers": config.shoppers,
        "units": config.units,
        "arrival": config.arrival,
        "shares": {"bots": config.bots, "declined": config.declined, "no_buy": config.no_buy},
        "oversold": oversold,
        "orders": orders,
        "orders_paid": orders["paid"],
        "units_accounted": {
            "quantity": drop.quantity,
            "paid": stock.sold,
            "pending": stock.pending,
            "held": stock.held,
            "free": free,
            "all_accounted": stock.sold + stock.pending + stock.held + free == drop.quantity,
        },
        "holds_left": stock.held,
        "authorizations": authorizations,
        "authorizations_open": sum(authorizations.get(status, 0) for status in OPEN_AUTHORIZATIONS),
        "join_latency_ms": _spread_ms(joins),
        # From arrival to a place in the queue or the sold-out answer (sign-in, card, proof-of-work, join).
        "placed_after_arrival_ms": {**_spread_ms(stats.placed_after), "count": len(stats.placed_after)},
        "stripe_calls": {
            **stripe_calls_get(drop_id=drop.pk),
            "admitted": stats.steps["admitted"],
            # Before holds were placed in queue order, every card was held when given (customer, attach,
            # PaymentIntent) and every loser's hold canceled: what this run would have cost then.
            "card_held_at_once_design": 3 * authorizations_cards(authorizations)
            + max(0, authorizations_cards(authorizations) - authorizations.get("captured", 0)),
        },
        "joins": {
            "attempted": stats.joins_attempted,
            "answered": stats.joins_answered,
            "unanswered": stats.joins_attempted - stats.joins_answered,
            # Places lost with Redis (joined in the second before it died, not yet saved): joined again.
            "joined_again": stats.steps["joined_again"],
        },
        "latency_ms": stats.latency_summary(),
        # Latencies above are measured in the simulation's one event loop: when it wakes late, every
        # step it times looks slower than the server was.
        "simulator_loop_lag_ms": _spread_ms(stats.loop_lag),
        "errors": dict(stats.errors.most_common()),
        "server_errors_5xx": server_errors,
        "server_errors": dict(stats.server_errors.most_common()),
        "unanswered_requests": dict(stats.unanswered.most_common()),
        "polls_missed_read_again": dict(stats.missed.most_common()),
        "resent_after_dropped_connection": dict(stats.resent.most_common()),
        "outcomes": dict(stats.outcomes.most_common()),
        "outcomes_by_role": {role: dict(found.most_common()) for role, found in sorted(stats.outcomes_by_role.items())},
        "bots": {"blocked": bots.blocked, "flagged": bots.flagged},
        "admission_rate": admission_rate_measure(
            samples, cap_multiple=drop.admitted_cap_multiple, rate=drop.admission_rate
        ),
        "time_to_sell_out_seconds": sell_out_seconds(samples, starts_at=times.starts_at),
        "database_and_redis_agree": stock_agrees(stock),
        "websocket": dict(stats.sockets.most_common()),
        "seconds": {
            "shoppers": round(times.shoppers_done - times.arrivals_began, 1),
            "total_with_settling": round(times.ended - times.arrivals_began, 1),
        },
        "timed_out": times.timed_out,
        "unfinished_shoppers": times.unfinished,
        "ticked_locally": config.tick_locally,
        "local_beat_failures": beat_failures,
        "rate_limits_enabled_here": settings.RATELIMIT_ENABLE,
    }
    report["ok"] = oversold == 0 and server_errors == 0 and unanswered == 0
    return report


def authorizations_cards(authorizations: dict[str, int]) -> int:
    """Shoppers' cards given (one authorization each; a new card after a decline is another)."""
    return sum(authorizations.values())


def _spread_ms(seconds: list[float]) -> dict:
    return {
        "p50": _ms(percentile(seconds, 50)),
        "p99": _ms(percentile(seconds, 99)),
        "max": _ms(max(seconds) if seconds else None),
    }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


def report_format(report: dict) -> str:
    """Render the report as a readable table."""
    units = report["units_accounted"]
    rate = report["admission_rate"]
    auth = report["authorizations"]
    joins = report["joins"]
    rows = [
        ("drop", f"{report['drop']} at {report['url']} ({report['arrival']} arrival)"),
        ("shoppers / units", f"{report['shoppers']:,} / {report['units']:,}"),
        ("units oversold", _flag(report["oversold"], good=report["oversold"] == 0)),
        ("orders paid", report["orders_paid"]),
        (
            "units",
            f"paid {units['paid']}, pending {units['pending']}, held {units['held']}, free {units['free']} "
            f"of {units['quantity']}" + ("" if units["all_accounted"] else "  <-- NOT ALL ACCOUNTED FOR"),
        ),
        ("holds left", report["holds_left"]),
        ("authorizations", ", ".join(f"{k} {v}" for k, v in auth.items())),
        ("open authorizations left", report["authorizations_open"]),
        (
            "join latency",
            f"p50 {_milliseconds(report['join_latency_ms']['p50'])}, "
            f"p99 {_milliseconds(report['join_latency_ms']['p99'])} "
            f"({joins['answered']:,} of {joins['attempted']:,} joins answered)",
        ),
        (
            "placed after arrival",
            "p50 {p50}, p99 {p99}, max {max} ({count:,} shoppers placed or told sold out)".format(
                **{k: (v if k == "count" else _milliseconds(v)) for k, v in report["placed_after_arrival_ms"].items()}
            ),
        ),
        (
            "Stripe calls",
            "{total:,} (holds {holds_placed:,}, captures {captures:,}, cancels {cancels:,}, voids {voids:,}) for "
            "{admitted:,} shoppers admitted and {cards:,} cards given; holding every card at once: "
            "{card_held_at_once_design:,}".format(**report["stripe_calls"]),
        ),
        ("5xx responses", _flag(report["server_errors_5xx"], good=report["server_errors_5xx"] == 0)),
        ("unanswered requests", sum(report["unanswered_requests"].values())),
        ("position reads missed (read again)", sum(report["polls_missed_read_again"].values())),
        (
            "admission rate",
            f"set {rate['setting']}/s; measured {_per_second(rate['free_flow'])} in free flow "
            f"({rate['free_flow_seconds']} s, {rate['free_flow_ticks']} ticks; "
            f"{_per_second(rate['free_flow_sampled'])} on the sampler's clock), "
            f"{_per_second(rate['while_moving'])} while the queue moved ({rate['while_moving_seconds']} s)",
        ),
        ("time to sell out", _seconds(report["time_to_sell_out_seconds"])),
        (
            "simulator loop lag",
            "p50 {p50}, p99 {p99}, max {max} (latencies include it)".format(
                **{k: _milliseconds(v) for k, v in report["simulator_loop_lag_ms"].items()}
            ),
        ),
        ("database and Redis agree", "yes" if report["database_and_redis_agree"] else "NO"),
        ("run time", f"{report['seconds']['shoppers']} s shoppers, {report['seconds']['total_with_settling']} s total"),
    ]
    width = max(len(name) for name, _ in rows)
    lines = [f"{name.ljust(width)}  {value}" for name, value in rows]
    for title, counts in (
        ("errors by code", report["errors"]),
        ("outcomes", report["outcomes"]),
        (
            "latency by step (p50 / p99 ms)",
            {k: f"{v['p50_ms']} / {v['p99_ms']} ({v['count']})" for k, v in report["latency_ms"].items()},
        ),
        ("websocket", report["websocket"]),
        ("bots refused by reason", report["bots"]["blocked"]),
    ):
        lines.append(f"{title}:")
        lines.extend(f"  {key}: {value}" for key, value in counts.items())
        if not counts:
            lines.append("  (none)")
    if report["timed_out"]:
        lines.append(f"TIMED OUT with {report['unfinished_shoppers']} shoppers unfinished")
    if report["errors"].get("429 rate_limited") and report["rate_limits_enabled_here"]:
        lines.append("429s came back: run the server with RATELIMIT_ENABLE=0 (the simulation comes from one address)")
    lines.append("OK" if report["ok"] else "FAILED: oversold, 5xx or unanswered requests")
    return "\n".join(lines)


def _flag(value: int, *, good: bool) -> str:
    return str(value) if good else f"{value}  <-- MUST BE 0"


def _milliseconds(value: float | None) -> str:
    return "not measured" if value is None else f"{value} ms"


def _per_second(value: float | None) -> str:
    """A measured rate, or why there is none (no stretch long enough to measure)."""
    return "not measured" if value is None else f"{value}/s"


def _seconds(value: float | None) -> str:
    return "did not sell out" if value is None else f"{value} s after the start"

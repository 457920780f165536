"""The merchandiser's live dashboard: a time series sampled on every tick, and SVG charts of it."""

from __future__ import annotations

import itertools
import json
import time
from dataclasses import dataclass
from datetime import datetime

from django.utils import timezone
from django.utils.html import escape

from flashsale.redis import redis_client
from inventory.models import Drop, DropState
from inventory.redis_keys import inventory_keys

from .redis_keys import queue_keys

SERIES_LENGTH = 900  # samples kept: 15 minutes at one tick a second


# The dashboard's controls, in the order they are shown.
CONTROLS = ("pause", "resume", "end", "reconcile")


def controls_allowed(*, drop: Drop, state: DropState) -> list[str]:
    """The controls that make sense for the drop now: pause a live drop, resume a paused one, end one that has not
    ended, rebuild the stock of one whose Redis keys are kept."""
    allowed = {
        "pause": state is DropState.LIVE,
        "resume": drop.paused and state is not DropState.ENDED,
        "end": state is not DropState.ENDED,
        "reconcile": drop.redis_released_at is None,
    }
    return [name for name in CONTROLS if allowed[name]]


DURATION_UNITS = (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1))


def duration_words(seconds: float) -> str:
    """A duration as people say it, two units at most: "40 seconds", "2 minutes 5 seconds", "3 hours 1 minute".

    ``static/js/dashboard.js`` says it the same way (``durationWords``) as the page counts on.
    """
    seconds = max(0, int(seconds))
    for index, (name, size) in enumerate(DURATION_UNITS):
        if seconds >= size or size == 1:
            words = _plural(seconds // size, name)
            if index + 1 < len(DURATION_UNITS):
                next_name, next_size = DURATION_UNITS[index + 1]
                rest = seconds % size // next_size
                if rest:
                    words += " " + _plural(rest, next_name)
            return words
    raise AssertionError("the last unit is one second")


def _plural(count: int, name: str) -> str:
    return f"{count} {name}" if count == 1 else f"{count} {name}s"


def timeline_words(*, starts_at: datetime, ends_at: datetime | None, now: datetime | None = None) -> str:
    """Where the drop is in time: "Starts in 5 minutes", "Started 40 seconds ago, ends in 1 hour", "Ended ..."."""
    now = now or timezone.now()
    if ends_at is not None and now >= ends_at:
        return f"Ended {duration_words((now - ends_at).total_seconds())} ago"
    if now < starts_at:
        text = f"Starts in {duration_words((starts_at - now).total_seconds())}"
    else:
        text = f"Started {duration_words((now - starts_at).total_seconds())} ago"
    if ends_at is not None:
        text += f", ends in {duration_words((ends_at - now).total_seconds())}"
    return text


def series_key(drop_id: int) -> str:
    return f"{queue_keys(drop_id).tick}:series"


@dataclass(frozen=True)
class Sample:
    t: float  # seconds since the epoch
    length: int
    serving: int
    admitted: int
    stock: int
    sold: int


def sample_record(*, drop: Drop, admitted: int) -> None:
    """Append this moment's figures to the drop's series (one read pipeline, one write pipeline)."""
    q, inv = queue_keys(drop.pk), inventory_keys(drop.pk)
    client = redis_client()
    read = client.pipeline(transaction=False)
    read.hlen(q.entries)
    read.get(q.serving)
    read.get(inv.stock)
    read.get(inv.sold)
    length, serving, stock, sold = read.execute()
    sample = [round(time.time(), 3), int(length), int(serving or 0), admitted, int(stock or 0), int(sold or 0)]
    write = client.pipeline(transaction=False)
    write.rpush(series_key(drop.pk), json.dumps(sample))
    write.ltrim(series_key(drop.pk), -SERIES_LENGTH, -1)
    write.execute()


def series_get(*, drop_id: int) -> list[Sample]:
    return [Sample(*json.loads(raw)) for raw in redis_client().lrange(series_key(drop_id), 0, -1)]


def per_second(samples: list[Sample], field: str) -> list[tuple[float, float]]:
    """Turn a cumulative figure (serving, sold) into a rate per second between samples."""
    points = []
    for before, after in itertools.pairwise(samples):
        elapsed = after.t - before.t
        if elapsed > 0:
            points.append((after.t, (getattr(after, field) - getattr(before, field)) / elapsed))
    return points


def recent_rate(samples: list[Sample], field: str, seconds: float = 10.0) -> float:
    """The average rate per second of a cumulative figure over the last ``seconds``."""
    if len(samples) < 2:
        return 0.0
    last = samples[-1]
    first = next((s for s in samples if s.t >= last.t - seconds), samples[0])
    if last.t <= first.t:
        return 0.0
    return (getattr(last, field) - getattr(first, field)) / (last.t - first.t)


def svg_chart(points: list[tuple[float, float]], *, title: str, width: int = 480, height: int = 160) -> str:
    """Draw one line chart as SVG (no library, nothing to download)."""
    pad = 28
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">'
        f'<rect width="100%" height="100%" fill="#fff"/>'
        f'<text x="{pad}" y="14" font-size="12" font-family="sans-serif">{escape(title)}</text>'
    )
    if len(points) < 2:
        return head + f'<text x="{pad}" y="{height // 2}" font-size="12" fill="#666">waiting for data</text></svg>'
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x0, x1 = min(xs), max(xs)
    top = max(ys) or 1
    span = (x1 - x0) or 1

    def xy(x: float, y: float) -> str:
        return f"{pad + (x - x0) / span * (width - 2 * pad):.1f},{height - pad - y / top * (height - 2 * pad):.1f}"

    line = " ".join(xy(x, y) for x, y in points)
    axis = (
        f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" stroke="#999"/>'
        f'<text x="2" y="{pad + 4}" font-size="10" font-family="sans-serif">{top:.0f}</text>'
        f'<text x="2" y="{height - pad}" font-size="10" font-family="sans-serif">0</text>'
        f'<text x="{width - pad - 40}" y="{height - 8}" font-size="10" font-family="sans-serif">'
        f"{span:.0f} s</text>"
    )
    return head + axis + f'<polyline fill="none" stroke="#d9480f" stroke-width="2" points="{line}"/></svg>'


CHARTS = {
    "queue": ("Queue length", lambda samples: [(s.t, s.length) for s in samples]),
    "admissions": ("Admissions per second", lambda samples: per_second(samples, "serving")),
    "stock": ("Units free", lambda samples: [(s.t, s.stock) for s in samples]),
    "purchases": ("Purchases per second", lambda samples: per_second(samples, "sold")),
}

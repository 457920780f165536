"""Suspicion scoring: signals a join carries, weighed into one score with the reasons behind it.

Everything here is pure computation on what the request already holds (headers, the body's
client signals, the session), so scoring adds nothing to the join's one Redis call.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache

# Matched against the lower-cased User-Agent: a case-insensitive search of these alternatives costs
# several times as much.
AUTOMATION_AGENT = re.compile(
    r"headless|phantomjs|selenium|puppeteer|playwright|python-requests|python-urllib|aiohttp|httpx|curl|wget|"
    r"go-http-client|okhttp|java/|libwww|scrapy|bot\b"
)
NEW_ACCOUNT_SECONDS = 3600
CACHED_AGENT_LENGTH = 512  # real browsers' User-Agents are 100-300 characters

WEIGHTS = {
    "no_user_agent": 40,
    "automation_user_agent": 60,
    "webdriver": 60,
    "headless": 60,
    "no_languages": 20,
    "new_account": 20,
}


@dataclass
class Verdict:
    score: int = 0
    reasons: list[str] = field(default_factory=list)

    def add(self, reason: str) -> None:
        self.score += WEIGHTS[reason]
        self.reasons.append(reason)


def suspicion_score(*, user_agent: str, signals: dict, account_age: float | None) -> Verdict:
    """Weigh the request's signals; ``signals`` is what the page's fingerprint script reported."""
    verdict = Verdict()
    if not user_agent.strip():
        verdict.add("no_user_agent")
    elif automation_agent(user_agent) if len(user_agent) <= CACHED_AGENT_LENGTH else _automation_search(user_agent):
        verdict.add("automation_user_agent")
    if signals.get("webdriver") is True:
        verdict.add("webdriver")
    if signals.get("headless") is True:
        verdict.add("headless")
    if signals.get("languages") == 0:
        verdict.add("no_languages")
    if account_age is not None and account_age < NEW_ACCOUNT_SECONDS:
        verdict.add("new_account")
    return verdict


@lru_cache(maxsize=4096)
def automation_agent(user_agent: str) -> bool:
    """Whether the User-Agent names an automation tool. A crowd sends a few hundred distinct User-Agents
    (the same browser builds), so the answer is kept: the search costs more than the rest of the scoring.
    Only ordinary lengths are kept (``CACHED_AGENT_LENGTH``), so that odd headers cannot fill memory."""
    return _automation_search(user_agent)


def _automation_search(user_agent: str) -> bool:
    return AUTOMATION_AGENT.search(user_agent.lower()) is not None


def pow_cost(*, base: int, verdict: Verdict) -> int:
    """Make the proof-of-work dearer as the signals get more suspicious (x1, x4 or x16)."""
    if verdict.score >= 60:
        return base * 16
    if verdict.score >= 20:
        return base * 4
    return base

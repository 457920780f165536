"""reCAPTCHA v3 through django-recaptcha's client: on only when both keys are configured."""

from __future__ import annotations

import logging
from urllib.error import URLError

from django.conf import settings
from django_recaptcha import client

from .errors import BotSuspected, QueueError

logger = logging.getLogger(__name__)


class RecaptchaUnavailable(QueueError):
    code = "recaptcha_unavailable"
    status = 503
    message = "The bot check could not be reached; try again in a moment."


def recaptcha_enabled() -> bool:
    return bool(settings.RECAPTCHA_PUBLIC_KEY and settings.RECAPTCHA_PRIVATE_KEY)


def recaptcha_check(*, token: str, remote_ip: str, action: str) -> None:
    """Verify a v3 token: valid, for ``action``, at or above the required score; raise otherwise.

    When Google cannot be reached the ``RECAPTCHA_FAIL_OPEN`` setting decides: let the join
    through (the other checks still apply) or refuse it with 503 ``recaptcha_unavailable``.
    """
    try:
        answer = client.submit(token, settings.RECAPTCHA_PRIVATE_KEY, remote_ip)
    except (URLError, TimeoutError, OSError, ValueError, KeyError) as exc:  # ValueError: bad JSON
        logger.warning(
            "reCAPTCHA verify failed (%s); failing %s",
            exc.__class__.__name__,
            "open" if settings.RECAPTCHA_FAIL_OPEN else "closed",
        )
        if settings.RECAPTCHA_FAIL_OPEN:
            return
        raise RecaptchaUnavailable from None
    if not answer.is_valid:
        raise BotSuspected(reasons=["recaptcha_invalid"])
    if answer.action != action:
        raise BotSuspected(reasons=["recaptcha_action"])
    if float(answer.extra_data.get("score", 0.0)) < settings.RECAPTCHA_REQUIRED_SCORE:
        raise BotSuspected(reasons=["recaptcha_score"])

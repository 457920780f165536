"""Session bookkeeping at sign-in, so the join path never has to load the user row."""

from django.contrib.auth.signals import user_logged_in
from django.dispatch import receiver

JOINED_AT_SESSION_KEY = "flashsale_joined_at"


@receiver(user_logged_in)
def remember_account_age(sender, request, user, **kwargs) -> None:
    """Keep when the account was made in the session (for the drop's minimum account age)."""
    if request is not None and hasattr(request, "session"):
        request.session[JOINED_AT_SESSION_KEY] = user.date_joined.timestamp()

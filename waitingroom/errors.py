"""Domain errors of the waiting room, each with its API status and stable code."""

from inventory.errors import InventoryError


class QueueError(InventoryError):
    code = "queue_error"
    status = 409
    message = "The waiting room refused this request."


class DropNotOpen(QueueError):
    code = "drop_not_open"
    message = "This drop's queue is not open."


class QueueSoldOut(QueueError):
    code = "sold_out"
    message = "Every unit of this drop is sold."


class AuthorizationRequired(QueueError):
    code = "authorization_required"
    status = 402
    message = "Pre-authorize your card for this drop before joining the queue."


class PowInvalid(QueueError):
    code = "pow_invalid"
    status = 400
    message = "The proof-of-work is missing, wrong or expired; solve a fresh challenge."


class PowReplayed(QueueError):
    code = "pow_replayed"
    status = 403
    message = "This proof-of-work was already used; solve a fresh challenge."


class QueueUnavailable(QueueError):
    """The drop's queue is missing from Redis (lost, being rebuilt): no answer about it would be true yet."""

    code = "service_unavailable"
    status = 503
    message = "The queue is being restored after an outage; you keep your place. Try again in a moment."


class NotInQueue(QueueError):
    code = "not_in_queue"
    status = 404
    message = "You are not in this drop's queue."


class NotAdmitted(QueueError):
    code = "not_admitted"
    status = 403
    message = "It is not your turn yet."


class AdmissionExpired(QueueError):
    code = "admission_expired"
    status = 410
    message = "Your checkout window has closed."


class BotSuspected(QueueError):
    code = "bot_suspected"
    status = 403
    message = "This request looks automated, so it was not queued."

    def __init__(self, message: str | None = None, *, reasons: list[str] | None = None) -> None:
        super().__init__(message)
        self.reasons = reasons or []


class UsernameTaken(QueueError):
    code = "username_taken"
    status = 409
    message = "That username is taken."


class InvalidShopper(QueueError):
    code = "invalid_request"
    status = 400
    message = "The account details are not valid."

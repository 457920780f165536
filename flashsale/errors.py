"""The base of every app's domain errors: a stable code, the HTTP status the API maps it to, a message."""


class DomainError(Exception):
    code = "error"
    status = 400
    message = "The request was refused."

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.message)
        self.message = message or self.message

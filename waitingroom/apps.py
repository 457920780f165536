from django.apps import AppConfig


class WaitingroomConfig(AppConfig):
    name = "waitingroom"
    verbose_name = "Waiting room"

    def ready(self) -> None:
        from . import signals  # noqa: F401 - connects the receivers

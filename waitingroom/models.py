"""The waiting room keeps its state in Redis; this proxy gives it a place in admin."""

from inventory.models import Drop


class DropQueue(Drop):
    """A drop seen from the waiting room: queue, admissions, bot mitigation."""

    class Meta:
        proxy = True
        verbose_name = "waiting room"
        verbose_name_plural = "waiting rooms"

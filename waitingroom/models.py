"""The waiting room keeps its state in Redis; this proxy gives it a place in admin."""

from django.conf import settings
from django.db import models

from inventory.models import Drop


class DropQueue(Drop):
    """A drop seen from the waiting room: queue, admissions, bot mitigation."""

    class Meta:
        proxy = True
        verbose_name = "waiting room"
        verbose_name_plural = "waiting rooms"


class QueueEntry(models.Model):
    """A queue entry saved off the join path (in batches), so the queue survives losing Redis."""

    drop = models.ForeignKey(Drop, on_delete=models.CASCADE, related_name="queue_entries")
    shopper = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="queue_entries")
    ticket = models.IntegerField(help_text="0 while in the pre-queue, -1 when parked as a suspected bot.")
    saved_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["drop", "shopper"], name="queue_entry_one_per_shopper_drop")]
        indexes = [models.Index(fields=["drop", "ticket"])]

    def __str__(self) -> str:
        return f"{self.drop_id}:{self.shopper_id} ticket {self.ticket}"


class QueueSnapshot(models.Model):
    """The queue's counters and open admissions, saved with each batch of entries."""

    drop = models.OneToOneField(Drop, on_delete=models.CASCADE, related_name="queue_snapshot")
    started = models.BooleanField(default=False)
    last_ticket = models.PositiveIntegerField(default=0)
    serving = models.PositiveIntegerField(default=0)
    admitted = models.JSONField(default=dict, help_text="shopper id -> admission expiry (ms)")
    saved_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"queue of {self.drop_id}: serving {self.serving} of {self.last_ticket}"

"""Admin of waiting rooms: queue figures, bot mitigation by reason, and releasing parked shoppers."""

from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.http import HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.views.decorators.http import require_POST

from . import selectors, services
from .models import DropQueue
from .scripts import ReleaseResult


@admin.register(DropQueue)
class DropQueueAdmin(admin.ModelAdmin):
    list_display = ["slug", "queue_length", "serving", "admitted_now", "blocked_total", "flagged_total"]
    fields = ["slug", "queue", "blocked", "flagged", "parked"]
    readonly_fields = fields
    search_fields = ["slug"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def get_urls(self):
        release = self.admin_site.admin_view(require_POST(self.release_view))
        return [
            path("<int:pk>/release/<int:shopper_id>/", release, name="waitingroom_dropqueue_release"),
            *super().get_urls(),
        ]

    def release_view(self, request, pk: int, shopper_id: int):
        drop = get_object_or_404(DropQueue, pk=pk)
        if not self.has_change_permission(request, drop):
            return HttpResponseRedirect(reverse("admin:index"))
        result = services.parked_release(drop=drop, shopper_id=shopper_id)
        level = messages.SUCCESS if result is ReleaseResult.RELEASED else messages.WARNING
        text = "released into the queue" if level == messages.SUCCESS else "was not parked"
        self.message_user(request, f"Shopper {shopper_id} {text}.", level)
        return HttpResponseRedirect(reverse("admin:waitingroom_dropqueue_change", args=[pk]))

    # --- figures ------------------------------------------------------------------------------------

    @admin.display(description="queued")
    def queue_length(self, drop: DropQueue) -> int:
        return selectors.queue_stats_get(drop_id=drop.pk).length

    @admin.display(description="serving")
    def serving(self, drop: DropQueue) -> int:
        return selectors.queue_stats_get(drop_id=drop.pk).serving

    @admin.display(description="admitted now")
    def admitted_now(self, drop: DropQueue) -> int:
        return selectors.queue_stats_get(drop_id=drop.pk).admitted

    @admin.display(description="blocked")
    def blocked_total(self, drop: DropQueue) -> int:
        return sum(selectors.bot_stats_get(drop_id=drop.pk).blocked.values())

    @admin.display(description="flagged")
    def flagged_total(self, drop: DropQueue) -> int:
        return sum(selectors.bot_stats_get(drop_id=drop.pk).flagged.values())

    @admin.display(description="queue")
    def queue(self, drop: DropQueue) -> str:
        stats = selectors.queue_stats_get(drop_id=drop.pk)
        return f"{stats.length} queued, serving ticket {stats.serving}, {stats.admitted} admitted now"

    @admin.display(description="refused joins by reason")
    def blocked(self, drop: DropQueue) -> str:
        return _by_reason(selectors.bot_stats_get(drop_id=drop.pk).blocked)

    @admin.display(description="parked entries by reason")
    def flagged(self, drop: DropQueue) -> str:
        return _by_reason(selectors.bot_stats_get(drop_id=drop.pk).flagged)

    @admin.display(description="parked shoppers")
    def parked(self, drop: DropQueue) -> str:
        parked = selectors.bot_stats_get(drop_id=drop.pk).parked
        if not parked:
            return "none"
        names = dict(get_user_model().objects.filter(pk__in=parked).values_list("pk", "username"))
        rows = [
            (
                names.get(shopper_id, shopper_id),
                ", ".join(reasons),
                reverse("admin:waitingroom_dropqueue_release", args=[drop.pk, shopper_id]),
            )
            for shopper_id, reasons in sorted(parked.items())
        ]
        # Each release is a POST; the admin page's CSRF cookie and token go with it through a tiny form.
        return format_html(
            "<table>{}</table>",
            format_html_join(
                "",
                '<tr><td>{}</td><td>{}</td><td><button type="submit" formaction="{}" formmethod="post">'
                "Release</button></td></tr>",
                rows,
            ),
        )


def _by_reason(counts: dict[str, int]) -> str:
    if not counts:
        return "none"
    return ", ".join(f"{reason}: {count}" for reason, count in sorted(counts.items()))

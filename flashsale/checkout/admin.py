"""Admin of waiting rooms: queue figures, bot mitigation by reason, releasing parked shoppers, and the live
dashboard (its figures span the apps: stock, queue, orders and card authorizations)."""

from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.views.decorators.http import require_POST

from inventory import services as inventory_services
from inventory.admin import STATE_WORDS
from inventory.models import DropState
from inventory.selectors import drop_state_get
from waitingroom import dashboard, selectors, services
from waitingroom.models import DropQueue
from waitingroom.scripts import ReleaseResult

from .selectors import dashboard_figures


@admin.register(DropQueue)
class DropQueueAdmin(admin.ModelAdmin):
    list_display = [
        "dashboard_link",
        "state",
        "queue_length",
        "serving",
        "admitted_now",
        "blocked_total",
        "flagged_total",
    ]
    # A waiting room is watched, not edited: its entry opens the live dashboard (the change page, with the
    # parked shoppers to release, is linked from there).
    list_display_links = None
    fields = ["slug", "queue", "blocked", "flagged", "parked"]
    readonly_fields = fields
    search_fields = ["slug"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path(
                "<int:pk>/release/<int:shopper_id>/",
                view(require_POST(self.release_view)),
                name="waitingroom_dropqueue_release",
            ),
            path("<int:pk>/dashboard/", view(self.dashboard_view), name="waitingroom_dropqueue_dashboard"),
            path("<int:pk>/dashboard.json", view(self.dashboard_json), name="waitingroom_dropqueue_dashboard_json"),
            path("<int:pk>/chart/<slug:name>.svg", view(self.chart_view), name="waitingroom_dropqueue_chart"),
            path("<int:pk>/end/", view(self.end_confirm_view), name="waitingroom_dropqueue_end_confirm"),
            path(
                "<int:pk>/control/<slug:action>/",
                view(require_POST(self.control_view)),
                name="waitingroom_dropqueue_control",
            ),
            *super().get_urls(),
        ]

    # --- the live dashboard -------------------------------------------------------------------------

    def _drop_or_deny(self, request, pk: int, *, change: bool = False) -> DropQueue | None:
        drop = get_object_or_404(DropQueue.objects.select_related("product"), pk=pk)
        allowed = self.has_change_permission(request, drop) if change else self.has_view_permission(request, drop)
        return drop if allowed else None

    def dashboard_view(self, request, pk: int):
        drop = self._drop_or_deny(request, pk)
        if drop is None:
            raise PermissionDenied
        figures = dashboard_figures(drop=drop)
        state = DropState(figures["status"]["state"])
        can_control = self.has_change_permission(request, drop)
        context = {
            **self.admin_site.each_context(request),
            "title": f"Live: {drop.product.title} ({drop.slug})",
            "drop": drop,
            "figures": figures,
            "state_words": STATE_WORDS[state],
            "timeline": dashboard.timeline_words(starts_at=drop.starts_at, ends_at=drop.ends_at),
            "controls": dashboard.controls_allowed(drop=drop, state=state) if can_control else [],
            "charts": list(dashboard.CHARTS),
            "can_control": can_control,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/waitingroom/dashboard.html", context)

    def end_confirm_view(self, request, pk: int):
        """Ask before ending a drop: the form posts to the control with ``confirm=yes``; works without script."""
        drop = self._drop_or_deny(request, pk, change=True)
        if drop is None:
            raise PermissionDenied
        state = drop_state_get(drop=drop)
        if "end" not in dashboard.controls_allowed(drop=drop, state=state):
            self.message_user(request, f"Nothing to end: {drop.slug} has already ended.", messages.WARNING)
            return HttpResponseRedirect(reverse("admin:waitingroom_dropqueue_dashboard", args=[pk]))
        context = {
            **self.admin_site.each_context(request),
            "title": f"End {drop.slug} now?",
            "drop": drop,
            "state_words": STATE_WORDS[state],
            "figures": dashboard_figures(drop=drop),
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/waitingroom/dashboard_end_confirm.html", context)

    def dashboard_json(self, request, pk: int):
        drop = self._drop_or_deny(request, pk)
        if drop is None:
            raise PermissionDenied
        return JsonResponse(dashboard_figures(drop=drop))

    def chart_view(self, request, pk: int, name: str):
        drop = self._drop_or_deny(request, pk)
        if drop is None:
            raise PermissionDenied
        if name not in dashboard.CHARTS:
            raise Http404("No such chart.")
        title, points = dashboard.CHARTS[name]
        svg = dashboard.svg_chart(points(dashboard.series_get(drop_id=drop.pk)), title=title)
        return HttpResponse(svg, content_type="image/svg+xml")

    def control_view(self, request, pk: int, action: str):
        drop = self._drop_or_deny(request, pk, change=True)
        if drop is None:
            raise PermissionDenied
        if action not in dashboard.CONTROLS:
            raise Http404("No such action.")
        dashboard_url = reverse("admin:waitingroom_dropqueue_dashboard", args=[pk])
        state = drop_state_get(drop=drop)
        if action not in dashboard.controls_allowed(drop=drop, state=state):
            self.message_user(request, f"Cannot {action} {drop.slug} now ({STATE_WORDS[state]}).", messages.WARNING)
            return HttpResponseRedirect(dashboard_url)
        if action == "end" and request.POST.get("confirm") != "yes":
            return HttpResponseRedirect(reverse("admin:waitingroom_dropqueue_end_confirm", args=[pk]))
        if action == "pause":
            inventory_services.drop_pause(drop=drop)
            done = f"Paused {drop.slug}: nobody new is admitted until you resume it; shoppers keep their places."
        elif action == "resume":
            inventory_services.drop_resume(drop=drop)
            done = f"Resumed {drop.slug}: admission goes on."
        elif action == "end":
            inventory_services.drop_end(drop=drop)
            done = f"Ended {drop.slug}: nobody can join or buy any more."
        else:
            result = inventory_services.inventory_rebuild(drop=drop)
            done = (
                f"Rebuilt the stock of {drop.slug} from the database: "
                f"{result.stock} free, {result.sold} sold, {result.held} held."
            )
        self.message_user(request, done, messages.SUCCESS)
        return HttpResponseRedirect(dashboard_url)

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

    def _state(self, drop: DropQueue) -> DropState:
        if not hasattr(drop, "_admin_state"):
            drop._admin_state = drop_state_get(drop=drop)
        return drop._admin_state

    @admin.display(description="drop", ordering="slug")
    def dashboard_link(self, drop: DropQueue) -> str:
        url = reverse("admin:waitingroom_dropqueue_dashboard", args=[drop.pk])
        return format_html('<a href="{}">{}</a>', url, drop.slug)

    @admin.display(description="state")
    def state(self, drop: DropQueue) -> str:
        return STATE_WORDS[self._state(drop)]

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

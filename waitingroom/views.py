"""The shopper's HTML pages; everything live on them goes through the JSON API and the websocket."""

from __future__ import annotations

from django.contrib.auth import login
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.decorators import method_decorator
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_http_methods
from django_ratelimit.decorators import ratelimit

from flashsale.ratelimits import password_sign_in_limited
from inventory.selectors import drop_list_visible, orders_for_shopper

from . import selectors, services
from .errors import QueueError
from .forms import SignupForm


@require_http_methods(["GET", "HEAD"])
def home(request: HttpRequest) -> HttpResponse:
    drops = [selectors.drop_public_get(drop=d) for d in drop_list_visible()]
    return render(request, "waitingroom/home.html", {"drops": drops})


def _next_page(request: HttpRequest) -> str:
    """Where to go after signing up: ``next`` when it is a page of this site, else the home page."""
    target = request.GET.get("next") or ""
    safe = url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    )
    return target if target and safe else "/"


@method_decorator(password_sign_in_limited, name="dispatch")
class LoginView(auth_views.LoginView):
    template_name = "registration/login.html"
    redirect_authenticated_user = True


class LogoutView(auth_views.LogoutView):
    next_page = "/"


@ratelimit(key="ip", rate="10/m", method="POST", block=True)
@require_http_methods(["GET", "POST"])
def signup(request: HttpRequest) -> HttpResponse:
    form = SignupForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            user = services.shopper_register(
                username=form.cleaned_data["username"],
                email=form.cleaned_data["email"],
                password=form.cleaned_data["password1"],
            )
        except QueueError as exc:  # taken meanwhile, say
            form.add_error(None, exc.message)
        else:
            login(request, user, backend="django.contrib.auth.backends.ModelBackend")
            return redirect(_next_page(request))
    return render(request, "registration/signup.html", {"form": form, "next": _next_page(request)})


@require_http_methods(["GET", "HEAD"])
@login_required
def profile(request: HttpRequest) -> HttpResponse:
    """The shopper's account: who they are, their latest orders, and where to change their password."""
    orders = orders_for_shopper(shopper_id=request.user.pk)
    return render(request, "registration/profile.html", {"orders": orders[:5], "order_count": orders.count()})


# Password reset and change are Django's own views, with the shop's templates; a reset request is
# rate limited per address (each one sends an e-mail).
PasswordResetView = method_decorator(ratelimit(key="ip", rate="5/m", method="POST", block=True), name="dispatch")(
    auth_views.PasswordResetView
)

from django.contrib import admin
from django.urls import include, path

from flashsale import views
from flashsale.metrics import metrics_view
from flashsale.ratelimits import password_sign_in_limited

# The admin's sign-in page is throttled like the shop's (a password list found a merchandiser's in 46 s).
admin.site.login = password_sign_in_limited(admin.site.login)

urlpatterns = [
    path("healthz", views.healthz, name="healthz"),
    path("favicon.ico", views.favicon, name="favicon"),
    path("metrics", metrics_view, name="metrics"),
    path("admin/", admin.site.urls),
    path("", include("flashsale.checkout.urls")),
    path("", include("payments.urls")),
    path("", include("waitingroom.urls")),
]

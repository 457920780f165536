from django.contrib import admin
from django.urls import include, path

from flashsale import views
from flashsale.metrics import metrics_view

urlpatterns = [
    path("healthz", views.healthz, name="healthz"),
    path("metrics", metrics_view, name="metrics"),
    path("admin/", admin.site.urls),
    path("", include("flashsale.checkout.urls")),
    path("", include("payments.urls")),
    path("", include("waitingroom.urls")),
]

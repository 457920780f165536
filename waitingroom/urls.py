"""Routes of the waiting room: session, shoppers, drops, queue, and the shopper's pages."""

from django.urls import path

from . import api, views

urlpatterns = [
    path("api/session", api.session, name="api-session"),
    path("api/shoppers", api.shoppers, name="api-shoppers"),
    path("api/drops", api.drop_list, name="api-drops"),
    path("api/drops/<slug:slug>", api.drop_detail, name="api-drop"),
    path("api/drops/<slug:slug>/challenge", api.challenge, name="api-challenge"),
    path("api/drops/<slug:slug>/queue", api.queue, name="api-queue"),
    path("", views.home, name="home"),
    path("accounts/login/", views.LoginView.as_view(), name="login"),
    path("accounts/logout/", views.LogoutView.as_view(), name="logout"),
    path("accounts/signup/", views.signup, name="signup"),
]

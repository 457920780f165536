"""Routes of the waiting room: session, shoppers, drops, queue, and the shopper's pages."""

from django.contrib.auth import views as auth_views
from django.urls import path
from django.views.generic import RedirectView

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
    path("accounts/", RedirectView.as_view(url="/accounts/profile/"), name="account"),
    path("accounts/profile/", views.profile, name="profile"),
    path("accounts/password_reset/", views.PasswordResetView.as_view(), name="password_reset"),
    path("accounts/password_reset/done/", auth_views.PasswordResetDoneView.as_view(), name="password_reset_done"),
    path(
        "accounts/reset/<uidb64>/<token>/", auth_views.PasswordResetConfirmView.as_view(), name="password_reset_confirm"
    ),
    path("accounts/reset/done/", auth_views.PasswordResetCompleteView.as_view(), name="password_reset_complete"),
    path("accounts/password_change/", auth_views.PasswordChangeView.as_view(), name="password_change"),
    path("accounts/password_change/done/", auth_views.PasswordChangeDoneView.as_view(), name="password_change_done"),
]

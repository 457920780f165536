"""Websocket routes."""

from django.urls import path

from .consumers import DropConsumer

websocket_urlpatterns = [
    path("ws/drops/<slug:slug>/", DropConsumer.as_asgi()),
]

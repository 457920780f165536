"""The sign-up form of the shop's page (the API's POST /api/shoppers takes the same fields)."""

from __future__ import annotations

from django import forms
from django.contrib.auth.forms import UserCreationForm


class SignupForm(UserCreationForm):
    email = forms.EmailField(
        label="E-mail", help_text="For your receipts, and to reset your password if you forget it.", max_length=254
    )

    class Meta(UserCreationForm.Meta):
        fields = ("username", "email")

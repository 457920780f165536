"""Print which Procfile `make run` uses: with localstripe unless a real Stripe key is configured."""

import os

key = os.environ.get("STRIPE_SECRET_KEY", "")
real = key.startswith(("sk_live_", "sk_test_", "rk_")) and "localstripe" not in key
print("Procfile" if real else "Procfile.dev")

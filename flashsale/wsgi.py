"""WSGI entry point."""

import os

from django.core.wsgi import get_wsgi_application

# What a deploy runs gets the production settings unless it opts out (`make run` sets the local ones).
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "flashsale.settings.production")
application = get_wsgi_application()

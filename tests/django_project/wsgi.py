"""The project's WSGI entry point, wrapped as docs/middleware.md shows."""

import os

from django.core.wsgi import get_wsgi_application

from mscomm_sync.django import wrap

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "django_project.settings")

application = wrap(get_wsgi_application())

import os

from django.core.wsgi import get_wsgi_application

from mscomm_sync.django import wrap

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "billing.settings")  # before the next line
application = wrap(get_wsgi_application())  # options from settings.MSCOMM

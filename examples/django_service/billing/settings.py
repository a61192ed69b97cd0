"""Settings of billing, a Django service behind the middleware (no database, no apps)."""

import os

# Django signs cookies and sessions with it; this service uses neither, but set a
# real one in production all the same.
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "example-only-not-a-secret")
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
ROOT_URLCONF = "billing.urls"
INSTALLED_APPS: list = []
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",  # as `startproject` makes it
]
DATABASES: dict = {}
TIME_ZONE = "UTC"  # Django sets the process time zone: log times in UTC

# [start mscomm]
MSCOMM = {
    "service_name": "billing",
    "allowed_callers": ["orders"],  # or the trust file's "callers", or $MSCOMM_CALLERS
}
# [end mscomm]

# [start logging]
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,  # keeps gunicorn's and Django's own loggers
    "formatters": {
        "timed": {"format": "{asctime} [{process}] [{levelname}] {name}: {message}", "style": "{"},
    },
    "handlers": {
        "stderr": {"class": "logging.StreamHandler", "formatter": "timed"},
    },
    "loggers": {
        "mscomm_sync": {"handlers": ["stderr"], "level": "WARNING", "propagate": False},
    },
}
# [end logging]

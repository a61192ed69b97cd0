"""Settings of the test project: no database, no apps, the middleware configured."""

SECRET_KEY = "test-only-django-secret-key-not-used-for-anything"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
ROOT_URLCONF = "django_project.urls"
INSTALLED_APPS: list[str] = []
MIDDLEWARE = ["django.middleware.common.CommonMiddleware"]
DATABASES: dict[str, dict[str, str]] = {}
USE_TZ = True
LOGGING_CONFIG = None

# Keys come from BILLING_ENCRYPTION_KEY and its callers' variables; the replay
# store's file from MSCOMM_REPLAY_DB.
MSCOMM = {
    "service_name": "billing",
    "exempt_paths": ["/health/"],
    "allowed_callers": ["orders", "shipping"],
}

"""A real, minimal Django project served behind EncryptionMiddleware in tests."""

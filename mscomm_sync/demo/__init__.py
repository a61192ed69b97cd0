"""The ``make demo`` walkthrough: real services under gunicorn on 127.0.0.1.

Run it with ``python -m mscomm_sync.demo``. Nothing here is imported by
``mscomm_sync`` itself.
"""

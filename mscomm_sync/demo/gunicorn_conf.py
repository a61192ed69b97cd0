"""gunicorn settings of the demo's instances: ``-c python:mscomm_sync.demo.gunicorn_conf``.

They are the logging recipe of ``docs/deployment.md`` (``examples/gunicorn.conf.py``):
the middleware's refusal lines go to gunicorn's error log with a time, a
level and the logger's name, so the walkthrough can show billing's own
account of why it refused a request.
"""

from __future__ import annotations

from typing import Any

loglevel = "warning"
graceful_timeout = 2

logconfig_dict: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "error_log": {
            "format": "%(asctime)s [%(process)d] [%(levelname)s] %(name)s: %(message)s",
            "datefmt": "[%Y-%m-%d %H:%M:%S %z]",
        },
    },
    "handlers": {
        "error_log": {
            "class": "logging.StreamHandler",
            "formatter": "error_log",
            "stream": "ext://sys.stderr",
        },
    },
    "loggers": {
        "mscomm_sync": {"level": "WARNING", "handlers": ["error_log"], "propagate": False},
    },
    "root": {"level": "WARNING", "handlers": ["error_log"]},
}

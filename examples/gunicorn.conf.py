"""gunicorn settings that give mscomm_sync's log lines a time, a level and a logger.

    gunicorn -c examples/gunicorn.conf.py -w 2 -b 127.0.0.1:8001 \
        --pythonpath examples flask_service:app

Without a handler, the middleware's refusal lines ("refused 401: ...") reach
Python's last-resort handler and come out bare on stderr. This sends them to
gunicorn's error log (stderr, gunicorn's default), in gunicorn's format.

With ``SERVICE_URL`` set (and ``SERVICE_NAME``, ``MSCOMM_REGISTRY``), the
instance also registers itself once gunicorn listens.
"""

# [start logging]
loglevel = "info"  # gunicorn's own lines (--log-level overrides it)

logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "error_log": {  # gunicorn's own format, with the logger's name added
            "format": "%(asctime)s [%(process)d] [%(levelname)s] %(name)s: %(message)s",
            "datefmt": "[%Y-%m-%d %H:%M:%S %z]",
        },
    },
    "handlers": {
        "error_log": {
            "class": "logging.StreamHandler",
            "formatter": "error_log",
            "stream": "ext://sys.stderr",  # where gunicorn's error log goes by default
        },
    },
    "loggers": {
        # refusals and app failures are WARNING and ERROR; INFO adds each reason twice
        "mscomm_sync": {"level": "WARNING", "handlers": ["error_log"], "propagate": False},
    },
    "root": {"level": "WARNING", "handlers": ["error_log"]},  # the app's own loggers
}
# [end logging]


# [start register]
def when_ready(server):
    """Once gunicorn listens, register this instance: SERVICE_NAME at SERVICE_URL."""
    import os

    if os.environ.get("SERVICE_URL"):
        from mscomm_sync import initialize_registry, register_from_env

        initialize_registry()  # $MSCOMM_REGISTRY
        register_from_env()

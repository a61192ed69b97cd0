"""The Celery app of the worker test: a filesystem broker and results, no server.

Both the test process (which sends tasks) and the worker (which runs
``tasks.py``) build the app from one directory, given to the worker in the
environment variable :data:`FOLDER_VARIABLE`.
"""

from __future__ import annotations

import os
from pathlib import Path

from celery import Celery

#: The environment variable that holds the broker and results directory.
FOLDER_VARIABLE = "MSCOMM_TEST_CELERY_DIR"


def make_app(folder: Path) -> Celery:
    """Return the test's Celery app, with its broker and results under ``folder``."""
    broker = folder / "broker"
    results = folder / "results"
    for path in (broker, results, folder / "control", folder / "processed"):
        path.mkdir(parents=True, exist_ok=True)
    app = Celery("mscomm_celery_test", broker="filesystem://", backend=f"file://{results}")
    app.conf.update(
        broker_transport_options={
            "data_folder_in": str(broker),
            "data_folder_out": str(broker),
            "control_folder": str(folder / "control"),
            "processed_folder": str(folder / "processed"),
            "store_processed": False,
            "polling_interval": 0.1,
        },
        broker_connection_retry_on_startup=True,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        worker_prefetch_multiplier=1,
        worker_enable_remote_control=False,
        worker_hijack_root_logger=False,
    )
    return app


def app_from_env() -> Celery:
    """Return the app for the directory named in :data:`FOLDER_VARIABLE`."""
    return make_app(Path(os.environ[FOLDER_VARIABLE]))

"""WSGI apps that tests serve from a separate server process (gunicorn).

Each is a factory, so importing this module does nothing; keys, the service
name and the replay database come from the environment the test sets.
"""

from __future__ import annotations

import json
import os
from typing import Any

from mscomm_sync.wsgi import EncryptionMiddleware


def whoami(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """Answer with this worker's process id and the verified caller."""
    body = json.dumps({"pid": os.getpid(), "caller": environ.get("mscomm.caller")}).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]


def replay_app() -> EncryptionMiddleware:
    """The billing service with the default (host-wide SQLite) replay store."""
    return EncryptionMiddleware(whoami)

"""The demo's services, one Flask app per process, configured from the environment.

gunicorn loads :func:`create_app` (``mscomm_sync.demo.services:create_app()``)
in each service process. ``SERVICE_NAME`` picks the service, ``SERVICE_URL`` is
where it listens, and ``DEMO_INSTANCE`` labels the instance in answers so the
walkthrough can show which one replied.
"""

from __future__ import annotations

import os
from typing import Any

from ..registry import initialize_registry


def create_app() -> Any:
    """Build the Flask app for the service named by ``SERVICE_NAME``."""
    from flask import Flask, jsonify, request

    from ..wsgi import EncryptionMiddleware

    name = os.environ["SERVICE_NAME"]
    instance = os.environ.get("DEMO_INSTANCE", name)
    app = Flask(name)

    @app.get("/health")
    def health() -> Any:
        return jsonify(status="ok", instance=instance)

    @app.post("/api/v1/charge")
    def charge() -> Any:
        seen = request.get_data(as_text=True)
        return jsonify(
            instance=instance,
            caller=request.environ.get("mscomm.caller"),
            handler_saw=seen,
            charged=request.get_json(force=True).get("amount"),
        )

    @app.get("/api/v1/quote")
    def quote() -> Any:
        return jsonify(instance=instance, days=int(request.args.get("days", "2")))

    @app.post("/api/v1/checkout")
    def checkout() -> Any:
        from ..client import MicroServiceClient

        client = app.extensions.setdefault("demo_client", MicroServiceClient(name))
        order = request.get_json(force=True)
        bill = client.request(
            target_service="billing", endpoint="/api/v1/charge", method="POST", payload=order
        )
        ship = client.request(target_service="shipping", endpoint="/api/v1/quote")
        return jsonify(order=order, billing=bill.json(), shipping=ship.json())

    app.wsgi_app = EncryptionMiddleware(app.wsgi_app, service_name=name)  # type: ignore[method-assign]
    initialize_registry()  # MSCOMM_REGISTRY, set by the walkthrough
    return app

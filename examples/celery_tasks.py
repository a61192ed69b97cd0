"""orders' Celery tasks, calling billing through the client (see docs/celery.md).

Needs the ``celery`` extra (``celery[redis]``, for the Redis broker below) and
the same environment as any caller: ``ORDERS_PRIVATE_KEY`` (or ``_FILE``),
``MSCOMM_TRUST`` and ``MSCOMM_REGISTRY``.

    celery -A celery_tasks worker --concurrency=3
"""

# [start tasks]
from celery import Celery

from mscomm_sync import (
    CircuitOpenError,
    MicroServiceClient,
    ServiceUnavailableError,
    initialize_registry,
)

app = Celery("orders", broker="redis://127.0.0.1:6379/0")
initialize_registry()  # $MSCOMM_REGISTRY
client = MicroServiceClient("orders")  # at import: safe before the fork


@app.task(bind=True, max_retries=5)
def charge(self, order_id, amount):
    try:
        resp = client.request(
            target_service="billing",
            endpoint="/api/v1/charge",
            method="POST",
            payload={"order": order_id, "amount": amount},
            headers={"Idempotency-Key": f"charge-{order_id}"},  # sealed, in protocol v2
            timeout=10,
        )
    except CircuitOpenError as exc:  # nothing was sent; wait for the probe
        raise self.retry(exc=exc, countdown=max(exc.retry_after, 1.0)) from exc
    except ServiceUnavailableError as exc:  # the client's own retries are spent
        raise self.retry(exc=exc, countdown=30 * 2**self.request.retries) from exc
    return resp.json()


# [end tasks]

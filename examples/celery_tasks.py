"""orders' Celery tasks, calling billing through the client (see docs/celery.md).

Needs the ``celery`` extra (``celery[redis]``, for the Redis broker below) and
the same environment as any caller: ``ORDERS_PRIVATE_KEY`` (or ``_FILE``),
``MSCOMM_TRUST`` and ``MSCOMM_REGISTRY``.

    celery -A celery_tasks worker --concurrency=3
"""

# [start tasks]
import os

from celery import Celery

from mscomm_sync import (
    MaybeDeliveredError,
    MicroServiceClient,
    NotDeliveredError,
    initialize_registry,
)

app = Celery("orders", broker=os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0"))
# Acknowledge a task once it has run, and run it again if its worker child
# died: the idempotency key below makes running it again safe.
app.conf.update(task_acks_late=True, task_reject_on_worker_lost=True)
initialize_registry()  # $MSCOMM_REGISTRY
client = MicroServiceClient("orders")  # at import: safe before the fork


@app.task(bind=True, max_retries=8)
def charge(self, order_id, amount):
    try:
        resp = client.request(
            target_service="billing",
            endpoint="/api/v1/charge",
            method="POST",
            payload={"order": order_id, "amount": amount},
            idempotency_key=f"charge-{order_id}",  # the same on every retry of this task
            timeout=10,
        )
    except NotDeliveredError as exc:  # nothing ran: always safe to send again
        wait = max(getattr(exc, "retry_after", 0.0), 2.0**self.request.retries)
        raise self.retry(exc=exc, countdown=wait) from exc
    except MaybeDeliveredError as exc:  # it may have run: safe again only with the key
        raise self.retry(exc=exc, countdown=2.0**self.request.retries) from exc
    resp.raise_for_status()
    return resp.json()


# [end tasks]

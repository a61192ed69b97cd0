"""Tasks run by the real prefork worker; the client is made and used at import.

This is the pattern the Celery docs page recommends against plain requests
and that mscomm_sync supports: the module builds one client when the worker
imports it, *before* the pool forks, and even makes a call with it, so the
parent holds a pooled keep-alive socket and a running health-poller thread
when the children are forked. Every child must still get the right answers,
with its own sockets, its own poller thread and its own breakers.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

from mscomm_sync.client import MicroServiceClient
from mscomm_sync.client.policies import BreakerPolicy, CallPolicy, RetryPolicy
from mscomm_sync.errors import CircuitOpenError, ServiceUnavailableError
from mscomm_sync.registry import initialize_registry

from .app import app_from_env

app = app_from_env()

#: The registry named by MSCOMM_REGISTRY, with its health poller running.
registry = initialize_registry(health_check_interval=0.5)
#: One client per process, made before the fork.
client = MicroServiceClient(
    "worker",
    policies={
        # A target that stays down: two failed calls open its circuit for
        # longer than the test runs, so "open" can only mean "opened here".
        "flaky": CallPolicy(
            retry=RetryPolicy(retries=0),
            breaker=BreakerPolicy(failure_threshold=2, recovery_timeout=600, jitter=0),
        ),
        # A target that is down when the test starts and comes up later; its
        # short open period keeps the Celery retries of ``charge`` quick.
        "late": CallPolicy(
            retry=RetryPolicy(retries=1),
            breaker=BreakerPolicy(failure_threshold=2, recovery_timeout=0.5, jitter=0),
        ),
    },
)
#: Used before the fork: the parent's pool now holds a live connection.
WARMUP = client.request(
    target_service="calc", endpoint="/add", method="POST", payload={"a": 20, "b": 22}, timeout=30
).json()["sum"]
IMPORT_PID = os.getpid()


def _open_circuit() -> list[str]:
    """Call the dead ``flaky`` service until this process's breaker for it opens."""
    errors = []
    for _ in range(5):
        try:
            client.request(target_service="flaky", endpoint="/x", timeout=10)
        except ServiceUnavailableError:
            errors.append("unavailable")
        except CircuitOpenError:
            errors.append("open")
            break
    return errors


#: Opened before the fork; children must start with breakers of their own.
PARENT_BREAKER = (_open_circuit(), client.breaker("flaky").state)

POLLER_THREAD = "mscomm-health-poller"


def _process() -> dict[str, Any]:
    """Describe this process: its pid, the importer's pid and its poller threads."""
    return {
        "pid": os.getpid(),
        "import_pid": IMPORT_PID,
        "warmup": WARMUP,
        "parent_breaker": PARENT_BREAKER,
        "pollers": [
            t.native_id for t in threading.enumerate() if t.name == POLLER_THREAD and t.is_alive()
        ],
    }


@app.task(name="mscomm_test.add")
def add(a: int, b: int) -> dict[str, Any]:
    """Add on the sealed ``calc`` service, through the client made before the fork."""
    response = client.request(
        target_service="calc", endpoint="/add", method="POST", payload={"a": a, "b": b}, timeout=30
    )
    return {**_process(), "status": response.status_code, "answer": response.json()}


@app.task(name="mscomm_test.open_circuit")
def open_circuit() -> dict[str, Any]:
    """Call the dead ``flaky`` service until this child's breaker for it opens."""
    errors = _open_circuit()
    return {**_process(), "errors": errors, "state": client.breaker("flaky").state}


@app.task(name="mscomm_test.breaker_state")
def breaker_state(target: str) -> dict[str, Any]:
    """Report this child's breaker state for ``target``."""
    time.sleep(0.2)  # keep this child busy so that the other children take tasks too
    return {**_process(), "state": client.breaker(target).state}


@app.task(name="mscomm_test.charge", bind=True, max_retries=40, acks_late=True)
def charge(self: Any, order_id: str, amount: int) -> dict[str, Any]:
    """The pattern of ``docs/celery.md``: Celery retries only what the client gave up on.

    The countdowns are shorter than the documented ones so the test is quick;
    the one after ``CircuitOpenError`` still waits for the breaker's probe.
    """
    try:
        response = client.request(
            target_service="late",
            endpoint="/charge",
            method="POST",
            payload={"order": order_id, "amount": amount},
            timeout=10,
            headers={"X-Order-Key": f"charge-{order_id}"},  # the app dedupes (v1: no keys)
        )
    except CircuitOpenError as exc:  # nothing was sent: wait for the probe
        raise self.retry(exc=exc, countdown=max(exc.retry_after, 0.1)) from exc
    except ServiceUnavailableError as exc:  # the client's own attempts are spent
        raise self.retry(exc=exc, countdown=0.2) from exc
    response.raise_for_status()
    return {**_process(), "answer": response.json(), "retries": self.request.retries}

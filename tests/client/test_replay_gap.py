"""A request the service did not run because its replay store is newer is sealed again.

The service's middleware answers such a request with a sealed 503 that says
it was not run; the client may then send it again whatever its method, and
the call costs one retry.
"""

from __future__ import annotations

import threading
from typing import Any, Callable

import pytest

from mscomm_sync.errors import ServiceUnavailableError
from mscomm_sync.replay import MemoryReplayStore

from .servers import Recorder, echo, json_app, sealed


class NewForAWhile(MemoryReplayStore):
    """A store that, for its first ``gaps`` requests, is newer than their seals.

    It stands for a store that began a moment after the caller sealed (a
    server restarted between the seal and the delivery).
    """

    def __init__(self, gaps: int) -> None:
        super().__init__()
        self.gaps = gaps
        self._lock_gaps = threading.Lock()

    @property  # type: ignore[override]
    def not_before(self) -> float:
        with self._lock_gaps:
            if self.gaps > 0:
                self.gaps -= 1
                return float("inf")
        return float("-inf")

    @not_before.setter
    def not_before(self, value: float) -> None:
        pass  # MemoryReplayStore sets its own at construction


def test_a_post_not_run_is_sealed_again_and_runs_once(
    serve: Callable[..., Any], make_client: Callable[..., Any]
) -> None:
    """A POST answered with the sealed "not run" 503 is retried (it cannot have run), waits
    the Retry-After, and runs exactly once."""
    recorder = Recorder()
    serve(sealed(json_app(recorder, {"/charge": echo}), replay_store=NewForAWhile(gaps=1)))
    client = make_client()
    resp = client.request(
        target_service="billing", endpoint="/charge", method="POST", payload={"n": 1}
    )
    assert resp.status_code == 200
    assert recorder.hits["/charge"] == 1


def test_retry_after_is_honoured(
    serve: Callable[..., Any], make_client: Callable[..., Any], clock: Any
) -> None:
    """The pause before sealing again is the service's Retry-After (1 s), not the backoff."""
    serve(sealed(json_app(Recorder(), {"/charge": echo}), replay_store=NewForAWhile(gaps=1)))
    make_client().request(target_service="billing", endpoint="/charge", method="POST")
    assert clock.sleeps == [1.0]


def test_a_service_that_never_vouches_fails_after_the_retries(
    serve: Callable[..., Any], make_client: Callable[..., Any]
) -> None:
    """If every attempt is refused this way, the call fails as unavailable after its
    retries, naming the reason, and the app never ran."""
    recorder = Recorder()
    serve(sealed(json_app(recorder, {"/charge": echo}), replay_store=NewForAWhile(gaps=99)))
    with pytest.raises(ServiceUnavailableError) as info:
        make_client().request(target_service="billing", endpoint="/charge", method="POST")
    assert info.value.attempts == 3
    assert info.value.reason == "not run by the service"
    assert recorder.hits == {}

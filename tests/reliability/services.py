"""Real sealed services for the reliability tests, and how long the tests run.

Each service is a small WSGI app behind the real ``EncryptionMiddleware``
(protocol v2 keys from a :class:`~support.fleet.Fleet`), served on 127.0.0.1
by waitress in this process (waitress keeps connections alive, as production
servers do). The client reaches it through a
:class:`~mscomm_sync.testing.FaultProxy` where a test wants a fault.
"""

from __future__ import annotations

import json
import os
import threading
from collections import Counter
from typing import Any, Callable

import attrs

from mscomm_sync.client.policies import BreakerPolicy, CallPolicy, RetryPolicy, TimeoutPolicy
from mscomm_sync.keyring import Keyring
from mscomm_sync.replay import MemoryReplayStore
from mscomm_sync.wsgi import EncryptionMiddleware

#: ``MSCOMM_SOAK=1`` (``make reliability``) runs the long variants with the default settings.
SOAK = os.environ.get("MSCOMM_SOAK", "") == "1"
WAIT = 60.0  # seconds: an upper bound for a slow machine, never a measurement


def scaled(short: int, soak: int) -> int:
    """``short`` in the default run, ``soak`` under ``MSCOMM_SOAK=1``."""
    return soak if SOAK else short


def policy(deadline: float, *, retries: int = 2, breaker: int = 5, **timeout: Any) -> CallPolicy:
    """A CallPolicy with the default backoff and budget, this deadline and breaker threshold."""
    return CallPolicy(
        retry=RetryPolicy(retries=retries),
        timeout=TimeoutPolicy(deadline=deadline, **timeout),
        breaker=BreakerPolicy(failure_threshold=breaker),
    )


class Counting:
    """A WSGI app that counts what it ran, per path, and answers with its own name.

    ``/health`` answers ``ok`` (it is exempt from sealing, for health checks).
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.runs: Counter[str] = Counter()
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/health":
            body = b"ok"
        else:
            with self._lock:
                self.runs[path] += 1
            length = int(environ.get("CONTENT_LENGTH") or 0)
            environ["wsgi.input"].read(length)
            answer = {"instance": self.name, "caller": environ.get("mscomm.caller")}
            body = json.dumps(answer).encode()
        start_response(
            "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
        )
        return [body]


def sealed(app: Callable[..., Any], fleet: Any) -> EncryptionMiddleware:
    """``app`` as the billing service: v2 only, orders as its one caller, /health exempt."""
    return EncryptionMiddleware(
        app,
        "billing",
        identity=fleet.identity("billing"),
        trust=fleet.trust("orders"),
        keyring=Keyring.from_mapping({}),
        versions=("2",),
        allowed_callers=["orders"],
        exempt_paths=("/health",),
        replay_store=MemoryReplayStore(),
    )


class WaitressServer:
    """Serve a WSGI app with waitress on 127.0.0.1 from a thread; ``url`` once entered."""

    def __init__(self, app: Callable[..., Any], threads: int = 8) -> None:
        from waitress import wasyncore
        from waitress.server import create_server

        self._map: dict[int, Any] = {}
        self._server = create_server(app, host="127.0.0.1", port=0, threads=threads, map=self._map)
        self._close_all = wasyncore.close_all
        self._thread = threading.Thread(
            target=wasyncore.loop,
            kwargs={"timeout": 0.05, "map": self._map, "use_poll": True},
            name="reliability-waitress",
            daemon=True,
        )
        self.url = f"http://127.0.0.1:{self._server.effective_port}"

    def __enter__(self) -> WaitressServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.task_dispatcher.shutdown(timeout=5)
        self._close_all(self._map)
        self._thread.join(WAIT)


@attrs.define
class FakeClock:
    """A monotonic clock and sleep that move only when told to (for breakers and budgets)."""

    now: float = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def first_pick(registry: Any, url: str) -> Callable[[], float]:
    """A ``random`` that makes the balancer try ``url`` first of billing's two instances."""
    urls = [i.url for i in registry.get_instances("billing")]
    assert len(urls) == 2 and url in urls
    value = 0.0 if urls[0] == url else 0.99
    return lambda: value


def report(capsys: Any, text: str) -> None:
    """Print a figure for the reliability run's log (shown even when output is captured)."""
    with capsys.disabled():
        print(f"\n[reliability] {text}")

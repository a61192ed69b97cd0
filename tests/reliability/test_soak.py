"""A bounded soak: many idempotent GETs through 20% random resets, against real gunicorn.

billing runs under gunicorn with sync workers, which close every connection
after one answer, so every attempt opens a new connection through the
FaultProxy and takes a fresh draw: each attempt's answer is reset (after the
service ran it) with probability 0.2. No call may be lost: each ends answered
or with a typed error saying, rightly, that it may have been delivered; the
counts of the client, the proxy and the service must agree. The default run
makes 100 calls, ``MSCOMM_SOAK=1`` 2,000; the figures are printed.
"""

from __future__ import annotations

import os
import random
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest
from support.apps import DELIVERY_LOG_ENV
from support.fleet import Fleet
from support.gunicorn import GunicornServer

from mscomm_sync import Delivery, MscommError
from mscomm_sync.testing import Fault, FaultProxy

from .services import policy, report, scaled

pytestmark = pytest.mark.reliability

RESETS = Fault(reset_after=0, reset_direction="downstream", probability=0.2)


@pytest.fixture(scope="module")
def billing(fleet: Fleet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """billing under gunicorn (two sync workers) with a log of every request it ran."""
    folder = tmp_path_factory.mktemp("soak")
    log = folder / "deliveries.log"
    env = fleet.environ("orders", private=["billing"])
    env.update(
        SERVICE_NAME="billing",
        MSCOMM_CALLERS="orders",
        MSCOMM_REPLAY_DB=str(folder / "replay.table"),
        **{DELIVERY_LOG_ENV: str(log)},
    )
    with GunicornServer("support.apps:replay_app()", workers=2, env=env) as server:
        yield server.url, log


def ran(log: Path) -> int:
    """How many /who requests billing's app answered."""
    lines = log.read_text().splitlines() if log.exists() else []
    return sum(1 for line in lines if line.split(" ", 2)[2:] == ["/who"])


def descriptors() -> int:
    return len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else -1


def rss_kib() -> int:
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return -1
    line = next(x for x in status.splitlines() if x.startswith("VmRSS:"))
    return int(line.split()[1])


def test_no_get_is_lost_under_random_resets(
    billing: tuple[str, Path],
    registry: Any,
    make_client: Callable[..., Any],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Every GET is answered or raises a typed error that says it may have been delivered;
    the proxy's connections are exactly the client's attempts, and each reached the service."""
    url, log = billing
    calls = scaled(100, 2000)
    before = ran(log)
    fds, rss = descriptors(), rss_kib()
    answered, failed = 0, Counter[str]()
    with FaultProxy(url, fault=RESETS, random=random.Random(2024)) as proxy:
        registry.register("billing", proxy.url)
        client = make_client(policy=policy(10.0))
        started = time.monotonic()
        halfway_rss = rss
        for number in range(calls):
            if number == calls // 2:
                halfway_rss = rss_kib()  # after the warm-up: pools, caches, buffers made
            try:
                resp = client.request(target_service="billing", endpoint="/who")
            except MscommError as exc:
                assert exc.delivery is Delivery.MAYBE_DELIVERED, exc
                failed[type(exc).__name__] += 1
                continue
            assert resp.json()["caller"] == "orders"
            answered += 1
        elapsed = time.monotonic() - started
        client.close()
        stats = proxy.wait_for(lambda s: s.active == 0)
    lost = sum(failed.values())
    assert answered + lost == calls
    assert set(failed) <= {"AnswerLostError"}
    assert stats.reset > 0 and stats.connections == stats.clean + stats.reset
    # A call that was answered made one attempt more than it met resets; one that failed
    # made as many as it met (it gave up after the last).
    assert stats.connections == calls - lost + stats.reset
    assert ran(log) - before == stats.connections  # every attempt reached the app
    # Nothing leaks: every descriptor the calls opened is closed (the client is closed), and
    # the second half of the calls grows the heap by no more than noise. A leak of 10 KiB a
    # call would pass 100 calls (make test) but not 2,000 (make reliability).
    fds_after, rss_after = descriptors(), rss_kib()
    second_half = calls - calls // 2
    assert fds_after <= fds + 2
    assert rss_after - halfway_rss <= 4096 + 2 * second_half
    report(
        capsys,
        f"soak: {calls} GETs, 20% of connections reset after the service ran: {answered}"
        f" answered, {lost} AnswerLostError, 0 lost; {stats.connections} attempts,"
        f" {stats.reset} resets; {elapsed:.2f} s ({elapsed / calls * 1000:.1f} ms a call);"
        f" descriptors {fds} -> {fds_after}, RSS {rss} -> {halfway_rss} (halfway) ->"
        f" {rss_after} KiB, {(rss_after - halfway_rss) / second_half:+.2f} KiB a call in the"
        " second half",
    )

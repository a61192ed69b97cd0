"""The owned periodic thread behind health polling and etcd refreshes."""

from __future__ import annotations

import logging
import threading

import pytest

from mscomm_sync.registry.worker import PeriodicWorker


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_jitter_stays_within_its_fraction() -> None:
    """Delays range over interval * (1 +/- jitter) as the random source moves."""
    for value, expected in ((0.0, 8.0), (0.5, 10.0), (0.999999, 12.0)):
        worker = PeriodicWorker(
            lambda: None, name="w", interval=10, jitter=0.2, random=lambda v=value: v
        )
        assert worker.next_delay() == pytest.approx(expected, abs=1e-4)


def test_first_run_can_wait_a_whole_interval() -> None:
    """With run_immediately=False nothing runs until the interval has passed."""
    clock, ran = FakeClock(), []
    worker = PeriodicWorker(
        lambda: ran.append(1), name="w", interval=5, run_immediately=False, clock=clock
    )
    worker.start()
    try:
        worker.stop()
        clock.now = 4.9
        assert worker.run_due() is False
        clock.now = 5.0
        assert worker.run_due() is True
    finally:
        worker.stop()
    assert ran == [1]


def test_a_failing_step_is_logged_and_does_not_stop_the_schedule(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An exception in the step is logged and the next run is still scheduled."""
    clock = FakeClock()

    def boom() -> None:
        raise RuntimeError("boom")

    worker = PeriodicWorker(boom, name="w", interval=1, clock=clock)
    with caplog.at_level(logging.ERROR, logger="mscomm_sync.registry"):
        assert worker.run_due() is True
        clock.now += 1
        assert worker.run_due() is True
    assert len([r for r in caplog.records if "step failed" in r.getMessage()]) == 2


def test_thread_runs_the_step_and_stops_when_asked() -> None:
    """Started, the thread runs the step; stop() ends it and reports so."""
    ran = threading.Event()
    worker = PeriodicWorker(ran.set, name="w", interval=3600)
    worker.start()
    try:
        assert ran.wait(30)
    finally:
        assert worker.stop(timeout=30) is True
    assert not worker.running


def test_start_twice_keeps_one_thread() -> None:
    """Starting a running worker does not start a second thread."""
    worker = PeriodicWorker(lambda: None, name="mscomm-test-once", interval=3600)
    with worker:
        worker.start()
        names = [t.name for t in threading.enumerate() if t.name == "mscomm-test-once"]
    assert names == ["mscomm-test-once"]


def test_invalid_settings_are_refused() -> None:
    """A non-positive interval or a jitter outside [0, 1) is refused."""
    with pytest.raises(ValueError):
        PeriodicWorker(lambda: None, name="w", interval=0)
    with pytest.raises(ValueError):
        PeriodicWorker(lambda: None, name="w", interval=1, jitter=1.0)

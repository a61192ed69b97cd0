"""Health polling against real HTTP servers, driven by poll_once and a fake clock."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask

from mscomm_sync.registry import FileRegistry, HealthCheckConfig, HealthPoller, Instance
from mscomm_sync.registry.base import make_instance
from mscomm_sync.testing import LiveServer


class Switch:
    """The status a test app's /health answers with, changeable by the test."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.hits = 0


def health_app(switch: Switch) -> Flask:
    """A Flask app whose /health answers ``switch.status``."""
    app = Flask("health")

    @app.get("/health")
    def health() -> tuple[str, int]:
        switch.hits += 1
        return "ok" if switch.status < 300 else "down", switch.status

    return app


class FakeClock:
    """A monotonic clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def switch() -> Switch:
    return Switch()


@pytest.fixture
def server(switch: Switch) -> Iterator[LiveServer]:
    with LiveServer(health_app(switch)) as live:
        yield live


@pytest.fixture
def dead_url() -> str:
    """A URL on a 127.0.0.1 port nobody listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def poller_for(instances: list[Instance], **config: object) -> HealthPoller:
    settings = {"timeout": 5.0, "rise": 2, "fall": 3, **config}
    return HealthPoller(lambda: instances, config=HealthCheckConfig(**settings))  # type: ignore[arg-type]


def test_live_instance_is_healthy(server: LiveServer) -> None:
    """An instance whose /health answers 200 stays healthy."""
    inst = make_instance("svc", server.url)
    with poller_for([inst]) as poller:
        assert poller.poll_once() == {inst.key: True}


def test_dead_port_becomes_unhealthy_after_fall_failures(dead_url: str) -> None:
    """A refused connection counts as a failure; the third makes the instance unhealthy."""
    inst = make_instance("svc", dead_url)
    poller = poller_for([inst], fall=3)
    try:
        verdicts = [poller.poll_once()[inst.key] for _ in range(3)]
    finally:
        poller.stop()
    assert verdicts == [True, True, False]


def test_503_counts_as_a_failure(server: LiveServer, switch: Switch) -> None:
    """An app answering 503 on its health route becomes unhealthy after the fall threshold."""
    switch.status = 503
    inst = make_instance("svc", server.url)
    poller = poller_for([inst], fall=2)
    try:
        verdicts = [poller.poll_once()[inst.key] for _ in range(2)]
    finally:
        poller.stop()
    assert verdicts == [True, False]


def test_recovery_needs_rise_consecutive_passes(server: LiveServer, switch: Switch) -> None:
    """An unhealthy instance becomes healthy only after `rise` passes in a row."""
    inst = make_instance("svc", server.url)
    poller = poller_for([inst], fall=1, rise=2)
    try:
        switch.status = 503
        assert poller.poll_once()[inst.key] is False
        switch.status = 200
        assert poller.poll_once()[inst.key] is False
        assert poller.poll_once()[inst.key] is True
    finally:
        poller.stop()


def test_a_pass_resets_the_failure_count(server: LiveServer, switch: Switch) -> None:
    """Failures must be consecutive: a pass in between keeps the instance healthy."""
    inst = make_instance("svc", server.url)
    poller = poller_for([inst], fall=2)
    try:
        verdicts = []
        for status in (503, 200, 503, 200):
            switch.status = status
            verdicts.append(poller.poll_once()[inst.key])
    finally:
        poller.stop()
    assert verdicts == [True, True, True, True]


def test_slow_health_endpoint_fails_by_timeout() -> None:
    """A probe that gets no answer within the per-probe timeout counts as a failure."""
    release = threading.Event()
    app = Flask("slow")

    @app.get("/health")
    def health() -> str:
        release.wait(30)
        return "late"

    with LiveServer(app) as live:
        inst = make_instance("svc", live.url)
        poller = poller_for([inst], timeout=0.2, fall=1)
        try:
            assert poller.poll_once()[inst.key] is False
        finally:
            release.set()
            poller.stop()


def test_unchecked_instances_count_as_healthy(dead_url: str) -> None:
    """Before any probe, an instance is healthy until proven otherwise."""
    poller = poller_for([make_instance("svc", dead_url)])
    assert poller.is_healthy("svc", dead_url)


def test_concurrency_is_bounded_by_max_workers() -> None:
    """No more probes are in flight at once than max_workers."""
    lock = threading.Lock()
    state = {"now": 0, "peak": 0}
    app = Flask("counting")

    @app.get("/health")
    def health() -> str:
        with lock:
            state["now"] += 1
            state["peak"] = max(state["peak"], state["now"])
        threading.Event().wait(0.02)  # hold the slot so overlaps can happen
        with lock:
            state["now"] -= 1
        return "ok"

    with LiveServer(app) as live:
        instances = [make_instance(f"svc-{n}", live.url) for n in range(12)]
        poller = poller_for(instances, max_workers=3)
        try:
            verdicts = poller.poll_once()
        finally:
            poller.stop()
    assert len(verdicts) == 12 and all(verdicts.values())
    assert 1 <= state["peak"] <= 3


def test_on_change_fires_only_when_the_unhealthy_set_changes(dead_url: str) -> None:
    """The change callback sees each new unhealthy set once."""
    seen: list[frozenset[tuple[str, str]]] = []
    inst = make_instance("svc", dead_url)
    poller = HealthPoller(
        lambda: [inst], config=HealthCheckConfig(fall=1, timeout=5.0), on_change=seen.append
    )
    try:
        for _ in range(3):
            poller.poll_once()
    finally:
        poller.stop()
    assert seen == [frozenset({inst.key})]


def test_verdicts_of_removed_instances_are_forgotten(dead_url: str) -> None:
    """An instance that leaves the targets loses its verdict at the next sweep."""
    targets = [make_instance("svc", dead_url)]
    poller = HealthPoller(lambda: targets, config=HealthCheckConfig(fall=1, timeout=5.0))
    try:
        poller.poll_once()
        targets.clear()
        poller.poll_once()
    finally:
        poller.stop()
    assert poller.unhealthy() == frozenset()


def test_run_due_waits_for_the_jittered_interval(server: LiveServer, switch: Switch) -> None:
    """With a fake clock, a sweep runs at once, then not again until the interval passes."""
    clock = FakeClock()
    inst = make_instance("svc", server.url)
    poller = HealthPoller(
        lambda: [inst],
        config=HealthCheckConfig(interval=10.0, jitter=0.5),
        clock=clock,
        random=lambda: 1.0,  # the longest delay: 10 * (1 + 0.5)
    )
    try:
        assert poller.run_due() is True
        clock.now += 14.9
        assert poller.run_due() is False
        clock.now += 0.2
        assert poller.run_due() is True
    finally:
        poller.stop()
    assert switch.hits == 2


def test_checked_at_uses_the_injected_clock(server: LiveServer) -> None:
    """The time of the last probe comes from the injected clock."""
    clock = FakeClock()
    inst = make_instance("svc", server.url)
    poller = HealthPoller(lambda: [inst], clock=clock)
    try:
        poller.poll_once()
    finally:
        poller.stop()
    assert poller.checked_at("svc", server.url) == clock.now


def test_registry_lookups_carry_this_process_verdicts(tmp_path: Path, dead_url: str) -> None:
    """get_instances reports an instance unhealthy once the poller has judged it so."""
    with FileRegistry(tmp_path / "r.json") as registry:
        registry.register("svc", dead_url)
        poller = registry.make_health_poller(HealthCheckConfig(fall=1, timeout=5.0))
        try:
            poller.poll_once()
        finally:
            poller.stop()
        assert [i.healthy for i in registry.get_instances("svc")] == [False]


def test_health_state_is_not_written_to_the_file(tmp_path: Path, dead_url: str) -> None:
    """Verdicts are per process: another registry object on the same file still sees healthy."""
    path = tmp_path / "r.json"
    with FileRegistry(path) as registry, FileRegistry(path) as other:
        registry.register("svc", dead_url)
        poller = registry.make_health_poller(HealthCheckConfig(fall=1, timeout=5.0))
        try:
            poller.poll_once()
        finally:
            poller.stop()
        assert [i.healthy for i in other.get_instances("svc")] == [True]


def test_start_health_checks_sweeps_on_its_own_thread(tmp_path: Path, dead_url: str) -> None:
    """The started poller sweeps without being driven and its verdicts reach lookups."""
    config = HealthCheckConfig(interval=0.05, jitter=0.0, fall=1, timeout=5.0)
    with FileRegistry(tmp_path / "r.json", health_check=config) as registry:
        registry.register("svc", dead_url)
        registry.start_health_checks()
        deadline = time.monotonic() + 30
        for _ in range(3000):
            if not registry.get_instances("svc")[0].healthy or time.monotonic() > deadline:
                break
            threading.Event().wait(0.01)
        assert registry.get_instances("svc")[0].healthy is False


def test_stop_health_checks_ends_the_thread(tmp_path: Path) -> None:
    """stop_health_checks returns with the thread ended, even mid-way through a long interval."""
    with FileRegistry(tmp_path / "r.json") as registry:
        poller = registry.start_health_checks(interval=3600)
        assert poller.running
        assert registry.stop_health_checks(timeout=10) is True
        assert not poller.running


def test_close_stops_health_checks(tmp_path: Path) -> None:
    """Closing the registry (or leaving its with-block) stops the poller."""
    with FileRegistry(tmp_path / "r.json", health_check_interval=3600) as registry:
        poller = registry.health_poller
        assert poller is not None and poller.running
    assert not poller.running


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_child_restarts_the_poller_on_first_lookup(tmp_path: Path) -> None:
    """In a forked child the poller thread is gone and the first lookup restarts it."""
    with FileRegistry(tmp_path / "r.json", health_check_interval=3600) as registry:
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            try:
                poller = registry.health_poller
                before = poller is not None and poller.running
                registry.get_instances("svc")
                after = poller is not None and poller.running
                os.write(write, f"{before} {after}".encode())
            finally:
                os._exit(0)
        os.close(write)
        with os.fdopen(read) as pipe:
            report = pipe.read()
        os.waitpid(pid, 0)
    assert report == "False True"


def test_last_probe_reports_the_http_status(server: LiveServer, switch: Switch) -> None:
    """A failed probe that got an answer says which status it got."""
    switch.status = 503
    inst = make_instance("svc", server.url)
    with poller_for([inst]) as poller:
        poller.poll_once()
        probe = poller.last_probe(*inst.key)
    assert probe is not None
    assert (probe.passed, probe.reason, probe.status) == (False, "HTTP 503", 503)


def test_last_probe_reports_a_refused_connection(dead_url: str) -> None:
    """A probe of a port nobody listens on says 'connection refused'."""
    inst = make_instance("svc", dead_url)
    with poller_for([inst]) as poller:
        poller.poll_once()
        probe = poller.last_probe(*inst.key)
    assert probe is not None
    assert (probe.passed, probe.reason, probe.status) == (False, "connection refused", None)


def test_last_probe_reports_a_read_timeout() -> None:
    """A probe of a server that accepts but never answers says 'read timeout' and the limit."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # the kernel completes the handshake; nobody ever answers
        inst = make_instance("svc", f"http://127.0.0.1:{silent.getsockname()[1]}")
        with poller_for([inst], timeout=0.2) as poller:
            poller.poll_once()
            probe = poller.last_probe(*inst.key)
    assert probe is not None
    assert (probe.passed, probe.reason) == (False, "read timeout (0.2 s)")


def test_probe_duration_is_measured_on_the_injected_clock(server: LiveServer) -> None:
    """seconds is the probe's own span on the poller's clock."""

    class TickingClock:
        def __init__(self) -> None:
            self.now = 0.0

        def __call__(self) -> float:
            self.now += 0.25
            return self.now

    inst = make_instance("svc", server.url)
    poller = HealthPoller(lambda: [inst], clock=TickingClock())
    try:
        poller.poll_once()
    finally:
        poller.stop()
    probe = poller.last_probe(*inst.key)
    assert probe is not None
    assert (probe.passed, probe.reason, probe.seconds) == (True, "HTTP 200", 0.25)


def test_unprobed_instance_has_no_last_probe(dead_url: str) -> None:
    """last_probe is None for an instance no sweep has reached."""
    assert poller_for([]).last_probe("svc", dead_url) is None


def test_unhealthy_warning_says_why(dead_url: str, caplog: pytest.LogCaptureFixture) -> None:
    """The warning that marks an instance unhealthy carries the last probe's reason."""
    inst = make_instance("svc", dead_url)
    with (
        caplog.at_level(logging.WARNING, logger="mscomm_sync.registry"),
        poller_for([inst], fall=1) as poller,
    ):
        poller.poll_once()
    [line] = [r.getMessage() for r in caplog.records if "unhealthy" in r.getMessage()]
    assert line.endswith("(last: connection refused)")

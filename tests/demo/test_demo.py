"""``python -m mscomm_sync.demo``: every step shows what it promises, and nothing is left behind.

Each run gets a registry location of its own (a file path, or an etcd prefix),
which the demo passes to every gunicorn it starts. Scanning ``/proc/*/environ``
for that string finds exactly the processes of that run, so the tests can
check that none outlives the demo, and can clean up after a failed run.
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Optional

import pytest

from mscomm_sync.registry import open_registry

try:  # how tests/ is importable depends on the pytest entry point
    from tests.support.etcd import EtcdCluster, etcd_cluster
except ImportError:  # pragma: no cover
    from support.etcd import EtcdCluster, etcd_cluster  # type: ignore[no-redef]

pytestmark = pytest.mark.skipif(
    not os.path.isdir("/proc/self"), reason="finds the demo's processes through /proc"
)

ROOT = Path(__file__).resolve().parents[2]
#: Generous bounds for a slow CI machine; the demo itself takes seconds.
RUN_TIMEOUT = 120.0
#: How long processes already SIGKILLed may take to leave /proc.
EXIT_GRACE = 3.0
STEP_HEADING = re.compile(r"^\[(\d)\] ", re.MULTILINE)


def processes_marked(marker: str) -> dict[int, str]:
    """Return ``{pid: command line}`` of live processes whose environment holds ``marker``."""
    needle = marker.encode()
    found: dict[int, str] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry.name}/environ", "rb") as f:
                if needle not in f.read():  # a zombie's environment reads empty
                    continue
            with open(f"/proc/{entry.name}/cmdline", "rb") as f:
                found[int(entry.name)] = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return found


def leftovers(marker: str) -> dict[int, str]:
    """Return the marked processes still alive once ``EXIT_GRACE`` has passed (or none are)."""
    deadline = time.monotonic() + EXIT_GRACE
    found = processes_marked(marker)
    while found and time.monotonic() < deadline:
        time.sleep(0.1)
        found = processes_marked(marker)
    return found


#: ``python -m mscomm_sync.demo``, started with SIGINT ignored.
IGNORING_SIGINT = (
    "import runpy, signal; signal.signal(signal.SIGINT, signal.SIG_IGN); "
    "runpy.run_module('mscomm_sync.demo', run_name='__main__', alter_sys=True)"
)


class DemoRun:
    """One ``python -m mscomm_sync.demo`` subprocess, its output read line by line.

    Args:
        location: the ``MSCOMM_REGISTRY`` it runs with; unique per run, it also
            marks the run's processes.
        sigint_ignored: start it with SIGINT ignored, as a background job is.
    """

    def __init__(self, location: str, *, sigint_ignored: bool = False) -> None:
        self.marker = location
        env = dict(os.environ, MSCOMM_REGISTRY=location, PYTHONUNBUFFERED="1")
        argv = [sys.executable, "-m", "mscomm_sync.demo"]
        if sigint_ignored:
            # As a script's background job or a CI runner may start it.
            argv[1:] = ["-c", IGNORING_SIGINT]
        self.proc = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[Optional[str]] = queue.Queue()
        self._reader = threading.Thread(target=self._read, name="demo-output", daemon=True)
        self._reader.start()
        self.deadline = time.monotonic() + RUN_TIMEOUT

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def _next(self) -> Optional[str]:
        """Return the next line, ``None`` at the end; fail the test after the deadline."""
        remaining = self.deadline - time.monotonic()
        try:
            line = self._queue.get(timeout=max(remaining, 0.0))
        except queue.Empty:
            pytest.fail(f"the demo ran past {RUN_TIMEOUT:g}s:\n{self.output}")
        if line is not None:
            self.lines.append(line)
        return line

    def wait_for(self, prefix: str) -> None:
        """Read until a line starts with ``prefix``; fail if the output ends first."""
        while True:
            line = self._next()
            if line is None:
                pytest.fail(f"the demo never printed {prefix!r}:\n{self.output}")
            if line.startswith(prefix):
                return

    def finish(self) -> int:
        """Read the rest of the output and return the exit status."""
        while self._next() is not None:
            pass
        return self.proc.wait(timeout=max(self.deadline - time.monotonic(), 1.0))

    @property
    def output(self) -> str:
        """Everything printed so far, stdout and stderr together."""
        return "\n".join(self.lines)

    def cleanup(self) -> None:
        """Kill whatever of this run is still alive (only after a failed run)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)
        for pid in processes_marked(self.marker):
            with contextlib.suppress(OSError):  # already gone
                os.kill(pid, signal.SIGKILL)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


class Outcome:
    """What a finished demo run left: its status, output and surviving processes."""

    def __init__(self, run: DemoRun, status: int, seen_running: dict[int, str]) -> None:
        self.status = status
        self.output = run.output
        self.seen_running = seen_running
        self.left = leftovers(run.marker)

    def step(self, number: int) -> str:
        """Return the output of step ``number``, heading included."""
        parts = STEP_HEADING.split(self.output)
        # parts: [preamble, "1", text of step 1, "2", text of step 2, ...]
        steps = {int(parts[i]): parts[i + 1] for i in range(1, len(parts) - 1, 2)}
        assert number in steps, self.output
        return steps[number]


def run_demo(location: str, *, interrupt_after_step_1: bool = False) -> Iterator[Outcome]:
    """Run the demo (interrupting it with SIGINT once step 1 has printed) and yield the outcome.

    The interrupted run starts with SIGINT ignored, the hardest case: the
    demo must still end cleanly on Ctrl-C.
    """
    run = DemoRun(location, sigint_ignored=interrupt_after_step_1)
    try:
        run.wait_for("[2] ")  # step 1 has printed the registry table
        if interrupt_after_step_1:
            # Hold the demo still while /proc is scanned: on a busy machine
            # the scan can outlast the rest of the demo, and the Ctrl-C would
            # then come after the end.
            run.proc.send_signal(signal.SIGSTOP)
            try:
                seen_running = processes_marked(run.marker)
                run.proc.send_signal(signal.SIGINT)
            finally:
                run.proc.send_signal(signal.SIGCONT)
        else:
            seen_running = processes_marked(run.marker)
        status = run.finish()
        yield Outcome(run, status, seen_running)
    finally:
        run.cleanup()


def unique_location(directory: Path) -> str:
    return str(directory / f"registry-{uuid.uuid4().hex}.json")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Outcome]:
    """One complete run of the demo with a file registry."""
    yield from run_demo(unique_location(tmp_path_factory.mktemp("demo")))


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Outcome]:
    """One run of the demo sent SIGINT (Ctrl-C) right after step 1."""
    location = unique_location(tmp_path_factory.mktemp("demo-interrupted"))
    yield from run_demo(location, interrupt_after_step_1=True)


@pytest.fixture(scope="module")
def etcd_for_demo() -> Iterator[EtcdCluster]:
    """A real etcd server for the demo's etcd run (skips locally without etcd, fails in CI)."""
    with etcd_cluster(1) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def etcd_location(etcd_for_demo: EtcdCluster) -> str:
    """An ``etcd://127.0.0.1:<port>/demo-test-...`` location no other run uses."""
    return etcd_for_demo.location(f"/demo-test-{uuid.uuid4().hex[:12]}")


@pytest.fixture(scope="module")
def etcd_demo(etcd_location: str) -> Iterator[Outcome]:
    """One complete run of the demo with ``MSCOMM_REGISTRY`` pointing at a real etcd."""
    yield from run_demo(etcd_location)


# -- a complete run ------------------------------------------------------------


def test_demo_exits_zero(demo: Outcome) -> None:
    """A complete run exits with status 0."""
    assert demo.status == 0, demo.output


def test_demo_output_has_no_traceback_or_failure(demo: Outcome) -> None:
    """The output holds no stack trace and no "demo failed" line."""
    assert "Traceback" not in demo.output
    assert "demo failed" not in demo.output


def test_step_1_shows_four_healthy_instances(demo: Outcome) -> None:
    """The registry table lists the four instances, all healthy."""
    rows = [line for line in demo.step(1).splitlines() if "http://127.0.0.1:" in line]
    assert len(rows) == 4, demo.step(1)
    assert all(line.split()[-1] == "healthy" for line in rows), demo.step(1)
    assert sorted(line.split()[0] for line in rows) == ["billing", "billing", "orders", "shipping"]


def test_step_2_sealed_call_answers_200(demo: Outcome) -> None:
    """The sealed call to billing answers 200, and the handler saw the plaintext."""
    step = demo.step(2)
    assert "-> 200, charged 42" in step, step
    assert '{"order":1001,"amount":42}' in step, step


def test_step_3_failover_has_no_errors(demo: Outcome) -> None:
    """After one billing instance is killed, all six calls are answered by the other."""
    step = demo.step(3)
    assert "6 calls, 6 answers, 0 errors" in step, step
    assert "billing-1" not in step.split("answered by:", 1)[-1], step


def test_step_4_breaker_fails_fast_then_recovers(demo: Outcome) -> None:
    """With shipping down the circuit opens (CircuitOpenError); once back, a call answers 200."""
    step = demo.step(4)
    assert "CircuitOpenError" in step, step
    assert "call 6: probe allowed -> 200" in step, step
    assert "breaker transitions: closed -> open -> half_open -> closed" in step, step


def test_step_4_transition_follows_the_call_that_caused_it(demo: Outcome) -> None:
    """The opening is shown after the failing call that caused it, before any fast failure."""
    lines = demo.step(4).splitlines()
    opened = [i for i, line in enumerate(lines) if "breaker shipping: closed -> open" in line]
    assert len(opened) == 1, lines
    assert "ServiceUnavailableError" in lines[opened[0] - 1], lines
    first_fast = next(i for i, line in enumerate(lines) if "CircuitOpenError" in line)
    assert opened[0] < first_fast, lines
    assert not [line for line in lines if "log mscomm_sync.client" in line], lines


def test_step_5_replay_is_refused_with_401(demo: Outcome) -> None:
    """The request captured in step 2, sent again byte for byte, is answered 401."""
    step = demo.step(5)
    assert re.search(r"replayed to http://127\.0\.0\.1:\d+/api/v1/charge -> 401", step), step


def test_step_6_call_through_a_service_answers_200(demo: Outcome) -> None:
    """orders, called itself, calls billing and shipping and answers 200."""
    assert "-> 200: billed by billing-2" in demo.step(6), demo.step(6)


def test_demo_reports_cleaning_up_every_process(demo: Outcome) -> None:
    """The last step says all four processes were cleaned up."""
    assert "Cleaned up 4 processes" in demo.step(7), demo.output


def test_demo_leaves_no_process_running(demo: Outcome) -> None:
    """Of the gunicorn processes seen during the run, none is alive after it."""
    gunicorns = [c for c in demo.seen_running.values() if "mscomm_sync.demo.services" in c]
    assert len(gunicorns) >= 4, demo.seen_running  # the scan does find the run's processes
    assert demo.left == {}


# -- Ctrl-C ----------------------------------------------------------------------


def test_interrupted_demo_exits_zero(interrupted: Outcome) -> None:
    """SIGINT after step 1 ends the demo with status 0, saying it was interrupted."""
    assert interrupted.status == 0, interrupted.output
    assert "interrupted; cleaning up" in interrupted.output
    assert "Cleaned up 4 processes" in interrupted.output


def test_interrupted_demo_prints_no_traceback(interrupted: Outcome) -> None:
    """An interrupted run prints no stack trace."""
    assert "Traceback" not in interrupted.output


def test_interrupted_demo_leaves_no_process_running(interrupted: Outcome) -> None:
    """SIGINT after step 1 still stops every gunicorn the demo started."""
    gunicorns = [c for c in interrupted.seen_running.values() if "mscomm_sync.demo.services" in c]
    assert len(gunicorns) >= 4, interrupted.seen_running
    assert interrupted.left == {}


# -- etcd ------------------------------------------------------------------------


@pytest.mark.etcd
def test_demo_with_etcd_exits_zero(etcd_demo: Outcome, etcd_location: str) -> None:
    """With MSCOMM_REGISTRY=etcd://..., the demo runs through every step and exits 0."""
    assert etcd_demo.status == 0, etcd_demo.output
    assert etcd_location in etcd_demo.step(1)
    assert "6 calls, 6 answers, 0 errors" in etcd_demo.step(3)
    assert "call 6: probe allowed -> 200" in etcd_demo.step(4)
    assert "Traceback" not in etcd_demo.output


@pytest.mark.etcd
def test_demo_with_etcd_leaves_no_registrations(etcd_demo: Outcome, etcd_location: str) -> None:
    """The demo's etcd registrations are gone when it ends (its lease is revoked)."""
    assert etcd_demo.status == 0, etcd_demo.output
    with open_registry(etcd_location) as registry:
        assert registry.services() == []


@pytest.mark.etcd
def test_demo_with_etcd_leaves_no_process_running(etcd_demo: Outcome) -> None:
    """With etcd too, no process of the run survives it."""
    assert etcd_demo.seen_running, "the scan found none of the run's processes"
    assert etcd_demo.left == {}

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


def key_variables(pids: Iterator[int]) -> dict[int, tuple[Optional[str], set[str]]]:
    """Return ``{pid: (SERVICE_NAME, names of its *_KEY variables)}``; never a key's value."""
    found: dict[int, tuple[Optional[str], set[str]]] = {}
    for pid in pids:
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                pairs = [item.partition(b"=") for item in f.read().split(b"\0") if item]
        except OSError:  # gone meanwhile
            continue
        env = {k.decode(errors="replace"): v for k, _, v in pairs}
        service = env["SERVICE_NAME"].decode() if "SERVICE_NAME" in env else None
        found[pid] = (service, {k for k in env if k.endswith(("_KEY", "_KEY_FILE"))})
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

    def __init__(
        self,
        run: DemoRun,
        status: int,
        seen_running: dict[int, str],
        keys: Optional[dict[int, tuple[Optional[str], set[str]]]] = None,
    ) -> None:
        self.status = status
        self.output = run.output
        self.seen_running = seen_running
        self.keys = keys or {}
        self.left = leftovers(run.marker)

    def step(self, number: int) -> str:
        """Return the output of step ``number``, heading included."""
        parts = STEP_HEADING.split(self.output)
        # parts: [preamble, "1", text of step 1, "2", text of step 2, ...]
        steps = {int(parts[i]): parts[i + 1] for i in range(1, len(parts) - 1, 2)}
        assert number in steps, self.output
        return steps[number]

    def flat(self, number: int) -> str:
        """Step ``number`` with its wrapped lines joined: every run of white space one space."""
        return " ".join(self.step(number).split())


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
        keys = key_variables(iter(seen_running))
        status = run.finish()
        yield Outcome(run, status, seen_running, keys)
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


def test_step_1_shows_each_service_and_its_callers(demo: Outcome) -> None:
    """The trust file's services are listed with a key id and their callers."""
    step = demo.step(1)
    for service, callers in (("billing", "orders"), ("shipping", "orders"), ("orders", "web")):
        assert re.search(rf"^  {service} +[0-9a-f]{{16}} +{callers}$", step, re.MULTILINE), step


def test_each_instance_holds_only_its_own_private_key(demo: Outcome) -> None:
    """Every gunicorn of the run has one key variable, its own service's private key."""
    gunicorns = [p for p, cmd in demo.seen_running.items() if "mscomm_sync.demo.services" in cmd]
    assert len(gunicorns) >= 4, demo.seen_running
    for pid in gunicorns:
        service, names = demo.keys[pid]
        assert service is not None
        assert names == {f"{service.upper()}_PRIVATE_KEY"}, (service, names)


def test_step_1_says_which_policy_the_calls_use(demo: Outcome) -> None:
    """The demo names its retries and breaker threshold, and steps 3 and 4 say what they mean."""
    assert "retries=1 and a breaker threshold of 3" in demo.flat(1)
    assert "retries=1: a failed attempt is tried once more (the default is 2)" in demo.flat(3)
    assert "threshold=3: three failed calls in a row open shipping's circuit" in demo.flat(4)
    assert "recovery_timeout=2: after 2 s one probe call is let through" in demo.flat(4)


def test_step_2_sealed_call_answers_200(demo: Outcome) -> None:
    """The sealed call to billing answers 200, and the handler saw the plaintext."""
    step = demo.step(2)
    assert "-> 200, charged 42" in step, step
    assert '{"order":1001,"amount":42}' in step, step
    assert "caller: orders (verified)" in step, step
    assert "v=2" in step, step  # sealed with protocol v2


def test_step_3_failover_has_no_errors(demo: Outcome) -> None:
    """After one billing instance is killed, every call is answered, by the other one."""
    step = demo.step(3)
    found = re.search(r"(\d+) calls, (\d+) answers, 0 errors", step)
    assert found and found.group(1) == found.group(2) and int(found.group(1)) >= 6, step
    assert "billing-1" not in step.split("answered by:", 1)[-1], step


def test_step_3_shows_the_failover_line(demo: Outcome) -> None:
    """The client's own INFO line of a failover from the dead instance is shown."""
    flat = demo.flat(3)
    assert "log mscomm_sync.client INFO: failover service=billing" in flat, demo.step(3)
    assert "reason=connection refused" in flat, demo.step(3)
    assert re.search(r"\b[1-9]\d* failover\(s\)", flat), demo.step(3)


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


#: A refusal line of billing's gunicorn log, as the demo prints it (wrapping undone).
REFUSAL = (
    r"{instance}'s log: \[\d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{{4}}\] \[\d+\] "
    r"\[WARNING\] mscomm_sync\.wsgi: refused 401: verification failed: replay \(sender='orders'"
)


def test_step_5_restarts_the_killed_instance(demo: Outcome) -> None:
    """billing-1, killed in step 3, is started again before the replay."""
    assert "billing-1, killed in step 3, is started again" in demo.flat(5), demo.step(5)


def test_step_5_replay_to_every_instance_is_refused_with_401(demo: Outcome) -> None:
    """The request captured in step 2, sent byte for byte to each billing instance (the
    restarted billing-1 included), is answered 401 by each."""
    flat = demo.flat(5)
    for instance in ("billing-1", "billing-2"):
        assert re.search(
            rf"replayed to {instance} \((took the original call|never saw it)\): "
            r"http://127\.0\.0\.1:\d+/api/v1/charge -> 401",
            flat,
        ), demo.step(5)
    assert "(took the original call)" in flat, demo.step(5)


def test_step_5_shows_billings_refusal_lines(demo: Outcome) -> None:
    """Each instance's own log line for the refused replay is shown, with time and level."""
    flat = demo.flat(5)
    for instance in ("billing-1", "billing-2"):
        assert re.search(REFUSAL.format(instance=instance), flat), demo.step(5)


def test_step_6_call_through_a_service_answers_200(demo: Outcome) -> None:
    """web calls orders, which calls billing and shipping and answers 200."""
    step = demo.step(6)
    assert re.search(r"-> 200: billed by billing-[12], 2 days by shipping-1", step), step


def test_step_7_says_why_compared_with_https_and_a_mesh(demo: Outcome) -> None:
    """The demo says what the seal gives that plain HTTPS and a mesh's mTLS do not."""
    flat = demo.flat(7)
    assert "HTTPS" in flat and "mesh" in flat, flat
    assert "docs/security.md" in flat, flat


def test_demo_reports_cleaning_up_every_process(demo: Outcome) -> None:
    """The clean-up line says all four processes were cleaned up."""
    assert "Cleaned up 4 processes" in demo.step(8), demo.output


def test_demo_ends_with_the_quickstarts_first_commands(demo: Outcome) -> None:
    """The last lines are the commands of the quickstart's first terminal, word for word."""
    text = (ROOT / "examples" / "quickstart.sh").read_text()
    region = text.split("# [start billing]\n", 1)[1].split("# [end billing]", 1)[0]
    commands = [line.split("   #", 1)[0].rstrip() for line in region.splitlines()]
    tail = demo.output.splitlines()[-(len(commands) + 1) : -1]
    assert [line[2:] for line in tail] == commands, demo.output
    assert demo.output.splitlines()[-1].startswith("then call it as orders"), demo.output


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
    assert "Next, a service of your own" not in interrupted.output


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
    assert re.search(r"(\d+) calls, \1 answers, 0 errors", etcd_demo.step(3))
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

"""Fixtures shared by the registry tests: files, a real etcd, a clean default."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mscomm_sync.registry import FileRegistry, reset_registry

try:  # how tests/ is importable depends on the pytest entry point
    from tests.support.etcd import EtcdCluster, etcd_cluster
except ImportError:  # pragma: no cover
    from support.etcd import EtcdCluster, etcd_cluster  # type: ignore[no-redef]


@pytest.fixture(autouse=True)
def _no_default_registry(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """Start every test with no default registry and a private default location."""
    monkeypatch.setenv("MSCOMM_REGISTRY", str(tmp_path / "default-registry.json"))
    reset_registry()
    yield
    reset_registry()


@pytest.fixture
def registry_path(tmp_path: Path) -> Path:
    """A registry file path that does not exist yet."""
    return tmp_path / "registry.json"


@pytest.fixture
def file_registry(registry_path: Path) -> Iterator[FileRegistry]:
    """A fresh file registry, closed after the test."""
    with FileRegistry(registry_path) as registry:
        yield registry


@pytest.fixture(scope="session")
def etcd_node() -> Iterator[EtcdCluster]:
    """One etcd server shared by the tests of a session (each uses its own prefix)."""
    with etcd_cluster(1) as cluster:
        yield cluster


@pytest.fixture
def private_etcd_node() -> Iterator[EtcdCluster]:
    """A single etcd server for a test that kills it."""
    with etcd_cluster(1) as cluster:
        yield cluster


@pytest.fixture
def etcd_three() -> Iterator[EtcdCluster]:
    """A 3-member etcd cluster for a test that kills a member."""
    with etcd_cluster(3) as cluster:
        yield cluster


@pytest.fixture
def etcd_prefix() -> str:
    """A key prefix no other test uses."""
    return f"/mscomm-test-{uuid.uuid4().hex[:12]}"


# A real writer that stops itself (SIGSTOP) inside FileRegistry's write: it holds
# the lock and has written its whole temporary file, but not yet renamed it.
_STOPPING_WRITER = """
import os, signal, sys
from mscomm_sync.registry import FileRegistry
real_replace = os.replace
def replace_after_a_stop(src, dst):
    os.kill(os.getpid(), signal.SIGSTOP)
    real_replace(src, dst)
os.replace = replace_after_a_stop
with FileRegistry(sys.argv[1]) as registry:
    registry.register("stopped", "http://127.0.0.1:9")
"""


def _wait_until_stopped(proc: subprocess.Popen[bytes], timeout: float) -> None:
    """Return once ``proc`` has stopped itself; fail if it exits or takes too long."""
    pause = threading.Event()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pid, status = os.waitpid(proc.pid, os.WUNTRACED | os.WNOHANG)
        if pid and os.WIFSTOPPED(status):
            return
        if pid:  # it exited instead: its stderr says why
            proc.returncode = os.waitstatus_to_exitcode(status)
            raise AssertionError(f"the writer exited early: {proc.stderr.read()!r}")  # type: ignore[union-attr]
        pause.wait(0.01)
    raise AssertionError("the writer did not stop within the bound")


@pytest.fixture
def stopped_writer() -> Iterator[Callable[[Path], subprocess.Popen[bytes]]]:
    """Start real writer processes that stop mid-write holding the lock; killed afterwards."""
    started: list[subprocess.Popen[bytes]] = []

    def start(path: Path) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            [sys.executable, "-c", _STOPPING_WRITER, str(path)], stderr=subprocess.PIPE
        )
        started.append(proc)
        _wait_until_stopped(proc, timeout=60)
        return proc

    yield start
    for proc in started:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
                os.kill(proc.pid, signal.SIGCONT)
        proc.wait(timeout=60)
        if proc.stderr is not None:
            proc.stderr.close()

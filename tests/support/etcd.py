"""Real etcd servers for tests: one node or a 3-member cluster on 127.0.0.1.

Each server runs ``/usr/bin/etcd`` (Debian's ``etcd-server``) on free loopback
ports with a temporary data directory, and is killed when the test is done.
When etcd is missing, tests skip with the reason, except under ``CI=true``,
where they fail: CI installs etcd, so a missing binary is a broken build.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Optional

import pytest
import requests

__all__ = ["EtcdCluster", "EtcdMember", "etcd_binary", "require_etcd"]

ETCD = "/usr/bin/etcd"
#: Names another etcd executable (or a missing one, to check the skip path).
ENV_BINARY = "MSCOMM_TEST_ETCD"
START_TIMEOUT = 60.0


def etcd_binary() -> Optional[str]:
    """Return the etcd executable, or ``None`` if it is not installed.

    ``$MSCOMM_TEST_ETCD`` overrides the search: that path or nothing.
    """
    override = os.environ.get(ENV_BINARY)
    if override:
        return override if os.access(override, os.X_OK) else None
    if os.access(ETCD, os.X_OK):
        return ETCD
    return shutil.which("etcd")


def require_etcd() -> str:
    """Return the etcd executable; skip the test (fail it under CI=true) if missing."""
    binary = etcd_binary()
    if binary is None:
        reason = (
            "etcd is not installed: install Debian's etcd-server (/usr/bin/etcd), "
            "or run `make services`"
        )
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason} (CI=true: etcd tests must run)", pytrace=False)
        pytest.skip(reason)
    return binary


def _free_ports(count: int) -> list[int]:
    socks = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            socks.append(sock)
        return [sock.getsockname()[1] for sock in socks]
    finally:
        for sock in socks:
            sock.close()


class EtcdMember:
    """One etcd process; ``url`` is its client URL."""

    def __init__(self, name: str, client_port: int, peer_port: int, data_dir: str) -> None:
        self.name = name
        self.client_port = client_port
        self.peer_port = peer_port
        self.data_dir = data_dir
        self.url = f"http://127.0.0.1:{client_port}"
        self.peer_url = f"http://127.0.0.1:{peer_port}"
        self.process: Optional[subprocess.Popen[bytes]] = None
        self.log_path = data_dir + ".log"

    def start(self, binary: str, initial_cluster: str, token: str) -> None:
        """Start the process (it joins ``initial_cluster``)."""
        argv = [
            binary,
            "--name", self.name,
            "--data-dir", self.data_dir,
            "--listen-client-urls", self.url,
            "--advertise-client-urls", self.url,
            "--listen-peer-urls", self.peer_url,
            "--initial-advertise-peer-urls", self.peer_url,
            "--initial-cluster", initial_cluster,
            "--initial-cluster-state", "new",
            "--initial-cluster-token", token,
            "--heartbeat-interval", "100",
            "--election-timeout", "1000",
            "--log-level", "warn",
        ]  # fmt: skip
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )

    @property
    def alive(self) -> bool:
        """Whether the process is still running."""
        return self.process is not None and self.process.poll() is None

    def healthy(self) -> bool:
        """Whether the member answers its health endpoint with a leader present."""
        try:
            answer = requests.get(self.url + "/health", timeout=2)
            return answer.ok and answer.json().get("health") == "true"
        except (requests.RequestException, ValueError):
            return False

    def status(self) -> dict[str, str]:
        """Return the member's ``/v3/maintenance/status`` header and leader."""
        answer = requests.post(self.url + "/v3/maintenance/status", json={}, timeout=5)
        answer.raise_for_status()
        body = answer.json()
        return {"member_id": body["header"]["member_id"], "leader": body["leader"]}

    def kill(self) -> None:
        """SIGKILL the process and reap it."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=30)

    def log(self) -> str:
        """Return what the process printed (for failure messages)."""
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()[-4000:]
        except OSError:
            return ""


class EtcdCluster:
    """``size`` etcd members forming one cluster on 127.0.0.1."""

    def __init__(self, size: int, workdir: str) -> None:
        ports = _free_ports(2 * size)
        self.members = [
            EtcdMember(f"m{n}", ports[2 * n], ports[2 * n + 1], os.path.join(workdir, f"m{n}"))
            for n in range(size)
        ]

    @property
    def urls(self) -> list[str]:
        """The client URLs of all members."""
        return [m.url for m in self.members]

    def location(self, prefix: str) -> str:
        """Return an ``etcd://`` registry location for all members and ``prefix``."""
        hosts = ",".join(f"127.0.0.1:{m.client_port}" for m in self.members)
        return f"etcd://{hosts}{prefix}"

    def start(self, binary: str) -> None:
        """Start every member and wait (bounded) until all are healthy."""
        initial = ",".join(f"{m.name}={m.peer_url}" for m in self.members)
        token = f"mscomm-test-{uuid.uuid4().hex[:8]}"
        for member in self.members:
            member.start(binary, initial, token)
        deadline = time.monotonic() + START_TIMEOUT
        pending = list(self.members)
        while pending and time.monotonic() < deadline:
            for member in list(pending):
                if not member.alive:
                    raise RuntimeError(f"etcd {member.name} exited:\n{member.log()}")
                if member.healthy():
                    pending.remove(member)
            if pending:
                time.sleep(0.1)
        if pending:
            logs = "\n".join(m.log() for m in pending)
            raise RuntimeError(f"etcd did not become healthy in {START_TIMEOUT}s:\n{logs}")

    def leader(self) -> EtcdMember:
        """Return the member that currently leads."""
        for member in self.members:
            if member.alive:
                status = member.status()
                for candidate in self.members:
                    if candidate.alive and candidate.status()["member_id"] == status["leader"]:
                        return candidate
        raise RuntimeError("no leader")

    def stop(self) -> None:
        """Kill every member."""
        for member in self.members:
            member.kill()


@contextmanager
def etcd_cluster(size: int = 1) -> Iterator[EtcdCluster]:
    """Start ``size`` etcd members for the duration of the block, then kill them."""
    binary = require_etcd()
    workdir = tempfile.mkdtemp(prefix="mscomm-etcd-")
    cluster = EtcdCluster(size, workdir)
    try:
        cluster.start(binary)
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(workdir, ignore_errors=True)

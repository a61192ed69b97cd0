"""A real Redis server for tests, on a free 127.0.0.1 port, killed when the test is done.

It runs Debian's ``redis-server`` with persistence off. When Redis is missing,
tests skip with the reason, except under ``CI=true``, where they fail: CI
installs it, so a missing binary is a broken build.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

__all__ = ["RedisServer", "redis_server", "require_redis"]

START_TIMEOUT = 30.0


def require_redis() -> str:
    """Return the redis-server executable; skip the test (fail it under CI=true) if missing."""
    binary = shutil.which("redis-server") or (
        "/usr/bin/redis-server" if os.access("/usr/bin/redis-server", os.X_OK) else None
    )
    if binary is None:
        reason = "redis-server is not installed: install Debian's redis-server (make services)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason} (CI=true: Redis tests must run)", pytrace=False)
        pytest.skip(reason)
    return binary


class RedisServer:
    """One running redis-server; :attr:`url` is ``redis://127.0.0.1:<port>``."""

    def __init__(self, proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
        self.proc = proc
        self.port = port
        self.log = log

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def db(self, number: int) -> str:
        """The URL of database ``number``."""
        return f"{self.url}/{number}"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def redis_server(workdir: Path) -> Iterator[RedisServer]:
    """Start redis-server in ``workdir``; stop it on exit (bounded waits throughout)."""
    binary = require_redis()
    port = _free_port()
    log = workdir / "redis.log"
    args = [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "",
            "--appendonly", "no", "--dir", str(workdir), "--logfile", str(log)]  # fmt: skip
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                text = log.read_text() if log.exists() else ""
                raise RuntimeError(f"redis-server did not start:\n{text[-2000:]}")
            time.sleep(0.05)
        yield RedisServer(proc, port, log)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)

"""Start, stop and clean up the demo's gunicorn processes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from typing import Optional

import requests

__all__ = ["ServiceProcess", "free_port"]


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServiceProcess:
    """One demo service instance under a real gunicorn on 127.0.0.1.

    Args:
        service: the service name (``SERVICE_NAME``).
        instance: a label for this instance, shown in answers.
        env: the environment to start it with (keys, registry).
        log_path: where gunicorn's output goes (its error log, with the
            middleware's refusal lines); appended to across restarts.
        workers: gunicorn worker processes.
        port: the port to bind; a free one when ``None``.
    """

    def __init__(
        self,
        service: str,
        instance: str,
        env: Mapping[str, str],
        *,
        log_path: str,
        workers: int = 2,
        port: Optional[int] = None,
    ) -> None:
        self.service = service
        self.instance = instance
        self.port = port if port is not None else free_port()
        self.workers = workers
        self._env = dict(env)
        self.log_path = log_path
        self._proc: Optional[subprocess.Popen[bytes]] = None

    @property
    def url(self) -> str:
        """The instance's base URL."""
        return f"http://127.0.0.1:{self.port}"

    def start(self, *, wait: float = 30.0) -> None:
        """Start gunicorn and wait (bounded) until ``/health`` answers."""
        env = dict(self._env)
        env.update(SERVICE_NAME=self.service, SERVICE_URL=self.url, DEMO_INSTANCE=self.instance)
        argv = [
            sys.executable, "-m", "gunicorn",
            "-c", "python:mscomm_sync.demo.gunicorn_conf",  # the logging recipe
            "--bind", f"127.0.0.1:{self.port}",
            "--workers", str(self.workers),
            "mscomm_sync.demo.services:create_app()",
        ]  # fmt: skip
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(
                argv, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(
                    f"{self.instance} exited with status {self._proc.returncode}; "
                    f"the end of its log:\n{''.join(self.log_lines()[-15:])}"
                )
            try:
                if requests.get(self.url + "/health", timeout=0.5).ok:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.instance} did not become healthy within {wait:g}s")

    def kill(self, timeout: float = 10.0) -> None:
        """SIGKILL the whole process group: an instance dying without warning.

        Returns once the port refuses connections (bounded by ``timeout``).
        Only the master is reaped here; until its workers are gone too, the
        shared listening socket still completes handshakes and then resets
        them, which is a dying instance rather than a dead one.
        """
        if self._proc is not None and self._proc.poll() is None:
            os.killpg(self._proc.pid, signal.SIGKILL)
            self._proc.wait(timeout=timeout)
            self._wait_refused(timeout)

    def _wait_refused(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    pass
            except OSError:
                return
            time.sleep(0.05)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop gracefully (SIGTERM), then SIGKILL if it lingers."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=timeout)
        except ProcessLookupError:
            pass

    def log_lines(self) -> list[str]:
        """Every line gunicorn (and the app) wrote so far."""
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                return f.readlines()
        except FileNotFoundError:
            return []

    def wait_for_log(self, after: int, needle: str, timeout: float = 5.0) -> Optional[str]:
        """Return the first line past the first ``after`` that contains ``needle``.

        A worker writes the line as it answers, so it may land just after the
        answer: wait for it, up to ``timeout`` seconds. ``None`` if it never comes.
        """
        deadline = time.monotonic() + timeout
        while True:
            for line in self.log_lines()[after:]:
                if needle in line:
                    return line.rstrip("\n")
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.05)

    @property
    def running(self) -> bool:
        """Whether the gunicorn master is alive."""
        return self._proc is not None and self._proc.poll() is None

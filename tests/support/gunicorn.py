"""Run a real gunicorn on 127.0.0.1 as a subprocess, and stop it.

The listening socket is bound here, on a free port, and handed to gunicorn
(``--bind fd://N``), so there is no window in which another process can take
the port. Only the process this object started is ever signalled.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Optional

import requests

from mscomm_sync.replay import default_replay_store

TESTS = Path(__file__).resolve().parent.parent
ROOT = TESTS.parent


class GunicornServer:
    """A gunicorn master with ``workers`` workers serving ``app``.

    Args:
        app: the gunicorn app spec, e.g. ``"support.apps:replay_app()"``; it is
            imported with ``tests/`` and the project root on ``PYTHONPATH``.
        workers: how many worker processes.
        env: extra environment variables for the server.
        preload: pass ``--preload`` (load the app in the master, then fork).
        worker_class: ``"sync"`` (one request at a time, no keep-alive) or
            ``"gthread"`` (``threads`` threads, keep-alive).
        threads: threads per gthread worker.
        ready_path: a plaintext path that answers 200 once a worker is up.
        startup_timeout: seconds to wait for ``ready_path``.
        args: more command-line options for gunicorn.
    """

    def __init__(
        self,
        app: str,
        *,
        workers: int = 3,
        env: Optional[dict[str, str]] = None,
        preload: bool = False,
        worker_class: str = "sync",
        threads: int = 1,
        ready_path: str = "/health",
        startup_timeout: float = 60.0,
        args: tuple[str, ...] = (),
    ) -> None:
        self.app = app
        self.workers = workers
        self.env = dict(env or {})
        self.preload = preload
        self.worker_class = worker_class
        self.threads = threads
        self.ready_path = ready_path
        self.startup_timeout = startup_timeout
        self.args = args
        self.port = 0
        self._proc: Optional[subprocess.Popen[bytes]] = None
        self._sock: Optional[socket.socket] = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> GunicornServer:
        """Start gunicorn and wait until it answers on ``ready_path``."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen(128)
        self._sock, self.port = sock, sock.getsockname()[1]
        env = {**os.environ, **self.env}
        env["PYTHONPATH"] = os.pathsep.join([str(TESTS), str(ROOT), env.get("PYTHONPATH", "")])
        ready_replay_table(env.get("MSCOMM_REPLAY_DB"))
        argv = [
            sys.executable,
            "-m",
            "gunicorn",
            "--bind",
            f"fd://{sock.fileno()}",
            "--workers",
            str(self.workers),
            "--worker-class",
            self.worker_class,
            "--threads",
            str(self.threads),
            "--graceful-timeout",
            "5",
            "--timeout",
            "60",
            "--log-level",
            "warning",
        ]
        if self.preload:
            argv.append("--preload")
        argv.extend(self.args)
        argv.append(self.app)
        self._proc = subprocess.Popen(argv, env=env, cwd=str(ROOT), pass_fds=(sock.fileno(),))
        self._wait_ready()
        return self

    @property
    def pid(self) -> int:
        """The master's process id (after :meth:`start`)."""
        if self._proc is None:
            raise RuntimeError("gunicorn is not running")
        return self._proc.pid

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {self._proc.returncode}")
            try:
                if requests.get(self.url + self.ready_path, timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("gunicorn did not become ready in time")

    def stop(self, timeout: float = 15.0) -> None:
        """Stop gunicorn (TERM, then KILL after ``timeout``) and close the socket."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout)
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> GunicornServer:
        return self.start()

    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return (
            f"<GunicornServer {self.app} {self.worker_class} workers={self.workers}"
            f" port={self.port}>"
        )


def ready_replay_table(path: Optional[str]) -> None:
    """Make the host-wide replay table at ``path`` now if it is new, and wait until it vouches.

    A new table vouches only for messages sealed from the whole second after
    it was made (``docs/middleware.md``); made lazily by the server's first
    request, it would refuse (with the sealed 503) the requests these tests seal
    and send at once. An existing table, or none, is left as it is.
    """
    if not path or os.path.exists(path):
        return
    saved = os.environ.get("MSCOMM_REPLAY_DB")
    os.environ["MSCOMM_REPLAY_DB"] = path
    try:
        store = default_replay_store()  # the kind the server will open for this path
    finally:
        if saved is None:
            del os.environ["MSCOMM_REPLAY_DB"]
        else:
            os.environ["MSCOMM_REPLAY_DB"] = saved
    since = getattr(store, "not_before", 0.0)
    getattr(store, "close", lambda: None)()
    time.sleep(max(0.0, since - time.time()))


def children_of(pid: int) -> list[int]:
    """The process ids whose parent is ``pid`` (Linux's /proc), e.g. a master's workers."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                # The command may hold spaces and parentheses: the fields follow the last ")".
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == pid:
                    found.append(int(entry.name))
    return sorted(found)

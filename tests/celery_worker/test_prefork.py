"""A real Celery prefork worker whose tasks call a real sealed service.

The worker runs as a subprocess: ``celery worker --pool=prefork
--concurrency=3`` with kombu's filesystem transport as broker and Celery's
``file://`` result backend, both under ``tmp_path``, so no server is needed.
The tasks module makes its client (and uses it) at import, before the pool
forks. The service is a Flask app behind ``EncryptionMiddleware``, served on
127.0.0.1 in this process by waitress (which keeps connections alive, so the
children inherit a live pooled socket), and registered in a temporary file
registry whose path the worker gets through ``MSCOMM_REGISTRY``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from celery.result import AsyncResult
from flask import Flask, request

from mscomm_sync.registry import FileRegistry
from mscomm_sync.replay import MemoryReplayStore
from mscomm_sync.testing.keys import KeyFactory
from mscomm_sync.wsgi import EncryptionMiddleware

from .app import FOLDER_VARIABLE, make_app

ROOT = Path(__file__).resolve().parents[2]
TASKS = "tests.celery_worker.tasks"
WAIT = 90.0  # seconds: an upper bound for a slow shared machine, never a measurement
TASK_COUNT = 30


def calc_app() -> Flask:
    """Return the ``calc`` service: it adds two numbers for a verified caller."""
    app = Flask("calc")

    @app.post("/add")
    def add() -> dict[str, Any]:
        data = request.get_json()
        # Hold each call a moment, so that calls from different children overlap:
        # children sharing one inherited socket would then read each other's replies.
        time.sleep(0.05)
        return {"sum": data["a"] + data["b"], "caller": request.environ["mscomm.caller"]}

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    return app


def late_app() -> Flask:
    """Return the ``late`` service: it charges an order once per order key.

    The app dedupes by a header of its own: this test's fleet speaks v1, which
    carries no idempotency keys.
    """
    app = Flask("late")
    seen: dict[str, Any] = {}

    @app.post("/charge")
    def charge() -> Any:
        key = request.headers["X-Order-Key"]
        data = request.get_json()
        return seen.setdefault(key, {"charged": data["amount"], "order": data["order"]})

    return app


@contextlib.contextmanager
def keep_alive_server(app: Any, port: int = 0) -> Iterator[str]:
    """Serve ``app`` with waitress on 127.0.0.1, with HTTP keep-alive; yield its URL.

    Keep-alive matters here: werkzeug's server closes every connection, which
    would hide a pooled socket shared by forked children. waitress keeps it.
    """
    from waitress import wasyncore
    from waitress.server import create_server

    sockets: dict[int, Any] = {}
    server = create_server(app, host="127.0.0.1", port=port, threads=6, map=sockets)
    thread = threading.Thread(
        target=wasyncore.loop,
        kwargs={"timeout": 0.1, "map": sockets, "use_poll": True},
        name="waitress-calc",
        daemon=True,
    )
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.effective_port}"
    finally:
        server.task_dispatcher.shutdown(timeout=5)
        wasyncore.close_all(sockets)
        thread.join(10)


def dead_port() -> int:
    """Return a port on 127.0.0.1 that nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Worker:
    """The worker subprocess, its Celery app, and bounded waits for results."""

    def __init__(
        self, app: Celery, process: subprocess.Popen[bytes], log: Path, late_port: int
    ) -> None:
        self.app = app
        self.process = process
        self.log = log
        self.late_port = late_port

    def run(self, name: str, *args: Any) -> AsyncResult:
        """Send the task ``name`` with ``args``."""
        return self.app.send_task(name, args=args)

    def wait(self, results: list[AsyncResult]) -> list[dict[str, Any]]:
        """Return every result, failing if the worker dies or they take over :data:`WAIT`."""
        deadline = time.monotonic() + WAIT
        for result in results:
            self.wait_until(lambda r=result: r.ready(), deadline)
        return [result.get(timeout=WAIT) for result in results]

    def wait_until(self, condition: Any, deadline: float) -> None:
        """Poll ``condition`` until it holds; fail if the worker dies or ``deadline`` passes."""
        while not condition():
            if self.process.poll() is not None:
                pytest.fail(f"worker exited {self.process.returncode}:\n{self.tail()}")
            if time.monotonic() > deadline:
                pytest.fail(f"condition unmet after {WAIT:g}s:\n{self.tail()}")
            time.sleep(0.05)

    def tail(self) -> str:
        """Return the end of the worker's log."""
        return self.log.read_text(errors="replace")[-4000:]


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    """Serve ``calc``, register it and a dead ``flaky``, and run one prefork worker."""
    tmp = tmp_path_factory.mktemp("celery")
    registry_path = tmp / "registry.json"
    log = tmp / "worker.log"
    with pytest.MonkeyPatch.context() as monkeypatch:
        KeyFactory(setenv=monkeypatch.setenv)("calc", "worker", "flaky", "late")
        monkeypatch.setenv("MSCOMM_REGISTRY", str(registry_path))
        monkeypatch.setenv(FOLDER_VARIABLE, str(tmp / "celery"))
        monkeypatch.setenv("PYTHONPATH", str(ROOT))
        app = make_app(tmp / "celery")
        calc = EncryptionMiddleware(calc_app(), "calc", replay_store=MemoryReplayStore())
        with FileRegistry(registry_path) as registry, keep_alive_server(calc) as calc_url:
            registry.register("calc", calc_url)
            registry.register("flaky", f"http://127.0.0.1:{dead_port()}")
            late_port = dead_port()  # nothing listens yet; a test starts "late" there
            registry.register("late", f"http://127.0.0.1:{late_port}")
            with log.open("wb") as out:
                process = subprocess.Popen(
                    [sys.executable, "-m", "celery", "-A", TASKS, "worker", "--pool=prefork",
                     "--concurrency=3", "-O", "fair", "--loglevel=INFO", "--without-gossip",
                     "--without-mingle", "--without-heartbeat"],
                    cwd=ROOT,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )  # fmt: skip
            try:
                yield Worker(app, process, log, late_port)
            finally:
                stop(process)
                app.close()


def stop(process: subprocess.Popen[bytes]) -> None:
    """Stop the worker (warm shutdown), then kill its process group if it lingers."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=30)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)  # the pool children, should any remain
    process.wait(timeout=30)


def test_prefork_children_share_nothing_but_the_client_made_before_fork(worker: Worker) -> None:
    """Thirty tasks in three prefork children all get the right sealed answer, each child
    using the client made and used before the fork, with its own poller thread."""
    results = worker.wait([worker.run("mscomm_test.add", n, 1000) for n in range(TASK_COUNT)])
    assert [r["status"] for r in results] == [200] * TASK_COUNT
    assert [r["answer"] for r in results] == [
        {"sum": n + 1000, "caller": "worker"} for n in range(TASK_COUNT)
    ]
    importer = {r["import_pid"] for r in results}
    children = {r["pid"] for r in results}
    assert len(importer) == 1 and importer.isdisjoint(children)  # the client predates the fork
    assert {r["warmup"] for r in results} == {42}  # and was used before it
    assert len(children) >= 2, children
    pollers = {r["pid"]: set(r["pollers"]) for r in results}
    for pid, threads in pollers.items():
        assert len(threads) == 1, (pid, threads)  # restarted in this child, exactly once
    assert len(set.union(*pollers.values())) == len(pollers)  # and no two children share one


def test_breakers_are_per_child(worker: Worker) -> None:
    """A circuit opened in one prefork child stays closed in the others, and the one the
    parent opened before the fork is in none of them."""
    [opened] = worker.wait([worker.run("mscomm_test.open_circuit")])
    assert opened["parent_breaker"] == [["unavailable", "unavailable", "open"], "open"]
    assert opened["errors"] == ["unavailable", "unavailable", "open"]
    assert opened["state"] == "open"
    states = worker.wait([worker.run("mscomm_test.breaker_state", "flaky") for _ in range(12)])
    by_child = {(s["pid"], s["state"]) for s in states}
    others = {(pid, state) for pid, state in by_child if pid != opened["pid"]}
    assert others, "no other child ran a task"
    assert {state for _pid, state in others} == {"closed"}
    assert {state for pid, state in by_child if pid == opened["pid"]} <= {"open"}


def test_celery_retries_after_the_client_gives_up(worker: Worker) -> None:
    """A task whose service is down is retried by Celery once the client's own attempts
    are spent, and succeeds when the service comes up."""
    result = worker.run("mscomm_test.charge", "order-7", 42)
    worker.wait_until(lambda: result.state == "RETRY", time.monotonic() + WAIT)
    late = EncryptionMiddleware(late_app(), "late", replay_store=MemoryReplayStore())
    with keep_alive_server(late, port=worker.late_port):
        [charged] = worker.wait([result])
    assert charged["answer"] == {"charged": 42, "order": "order-7"}
    assert charged["retries"] >= 1

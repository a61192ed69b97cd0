"""One contender of the end-to-end benchmark, in a process of its own.

``python -m benchmarks.contender KIND SERVER`` starts its own echo server
(``benchmarks/echo_app.py``), then times one call per line it reads on stdin
(the body size in bytes) and writes the seconds back; an empty line or end of
input stops it. KIND is ``plain`` (a ``requests.Session``), ``ours`` (a
``MicroServiceClient``) or ``presealed`` (a ``requests.Session`` sending
requests sealed before the clock starts). SERVER is ``waitress`` (in this
process, on a thread) or ``gunicorn`` (one gthread worker, its own process).
The keys come from ``ORDERS_ENCRYPTION_KEY`` and ``BILLING_ENCRYPTION_KEY``.

Each contender owns its client and its server processes, so one's memory
use cannot change another's: glibc hands freed memory back to the kernel
depending on what else the process allocated, and a process shared by a
sealed and a plain contender made the plain one pay page faults caused by
the other (see ``docs/performance.md``).
"""

from __future__ import annotations

import contextlib
import gc
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any, Callable

import requests

from mscomm_sync.client import MicroServiceClient
from mscomm_sync.envelope import Envelope, target_from_url
from mscomm_sync.keyring import Keyring
from mscomm_sync.registry import FileRegistry

from . import echo_app

KINDS = ("plain", "ours", "presealed")
#: The CPU gunicorn is pinned to, when set (``benchmarks/client.py`` sets it).
SERVER_CPU_ENV = "MSCOMM_BENCH_SERVER_CPU"
SERVERS = ("waitress", "gunicorn")


@contextlib.contextmanager
def waitress_server(keyring: Keyring) -> Iterator[str]:
    """Serve the echo app with waitress on a thread of this process."""
    from waitress.server import create_server

    server = create_server(
        echo_app.create(keyring),
        host="127.0.0.1",
        port=0,
        threads=4,
        channel_timeout=60,
        outbuf_overflow=64 << 20,
        inbuf_overflow=64 << 20,
    )
    stopping = threading.Event()

    def run() -> None:
        try:
            server.run()
        except (OSError, ValueError):
            # close() from this thread pulls the sockets from under select().
            if not stopping.is_set():
                raise

    thread = threading.Thread(target=run, name="bench-waitress", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.effective_port}"
    finally:
        stopping.set()
        server.close()
        thread.join(5)
        server.task_dispatcher.shutdown()


@contextlib.contextmanager
def gunicorn_server(environ: dict[str, str]) -> Iterator[str]:
    """Serve the echo app with gunicorn (one gthread worker, keep-alive) on 127.0.0.1.

    ``environ`` is gunicorn's environment; it must hold the services' keys.
    With ``MSCOMM_BENCH_SERVER_CPU`` in it, gunicorn runs on that CPU only.
    """
    root = Path(__file__).resolve().parent.parent
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    env = {**environ, "PYTHONPATH": str(root)}
    cpu = environ.get(SERVER_CPU_ENV)
    pin = None if cpu is None else partial(os.sched_setaffinity, 0, {int(cpu)})
    argv = [sys.executable, "-m", "gunicorn", "--bind", f"fd://{sock.fileno()}"]
    argv += ["--workers", "1", "--worker-class", "gthread", "--threads", "4"]
    argv += ["--keep-alive", "60", "--log-level", "warning", "benchmarks.echo_app:create()"]
    proc = subprocess.Popen(argv, env=env, cwd=str(root), pass_fds=(sock.fileno(),), preexec_fn=pin)
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    try:
        for _ in range(300):  # up to 30 s
            if proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {proc.returncode}")
            with contextlib.suppress(requests.RequestException):
                if requests.post(base + "/echo", data=b"up", timeout=2).ok:
                    break
            time.sleep(0.1)
        else:
            raise RuntimeError("gunicorn did not answer within 30 s")
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(15)
        sock.close()


def server_for(server: str, keyring: Keyring, environ: dict[str, str]) -> Any:
    """Return the context manager that runs ``server`` and yields its base URL."""
    if server == "waitress":
        return waitress_server(keyring)
    return gunicorn_server(environ)


def caller(
    kind: str, base: str, keyring: Keyring, stack: contextlib.ExitStack
) -> Callable[[int], float]:
    """Return a function that makes one call of ``size`` bytes and returns its seconds."""
    clock = time.perf_counter
    url = base + "/echo"
    bodies: dict[int, bytes] = {}

    def body_of(size: int) -> bytes:
        if size not in bodies:
            bodies[size] = bytes(size)
        return bodies[size]

    if kind == "ours":
        tmp = stack.enter_context(tempfile.TemporaryDirectory())
        registry = stack.enter_context(contextlib.closing(FileRegistry(Path(tmp) / "r.json")))
        registry.register("billing", base)
        client = MicroServiceClient("orders", registry=registry, keyring=keyring)
        stack.callback(client.close)

        def ours(size: int) -> float:
            body = body_of(size)
            start = clock()
            resp = client.request(
                target_service="billing", endpoint="/echo", method="POST", payload=body
            )
            assert resp.status_code == 200 and len(resp.content) == size
            return clock() - start

        return ours

    session = stack.enter_context(requests.Session())
    if kind == "plain":

        def plain(size: int) -> float:
            body = body_of(size)
            start = clock()
            resp = session.post(url, data=body)
            assert resp.status_code == 200 and len(resp.content) == size
            return clock() - start

        return plain

    orders = Envelope("orders", keyring=keyring)
    target = target_from_url(url)

    def presealed(size: int) -> float:
        # What a client with zero overhead of its own would still pay:
        # the middleware and the envelope's bytes on the wire.
        sealed = orders.seal_request(
            recipient="billing", method="POST", target=target, body=body_of(size),
            content_type="application/octet-stream",
        )  # fmt: skip
        start = clock()
        resp = session.post(url, data=sealed.body, headers=sealed.headers)
        assert resp.status_code == 200 and len(resp.content) == size + 16
        return clock() - start

    return presealed


def main(argv: list[str]) -> int:
    """Serve timing requests from stdin until an empty line or end of input."""
    kind, server = argv
    if kind not in KINDS or server not in SERVERS:
        raise SystemExit(f"usage: python -m benchmarks.contender {KINDS} {SERVERS}")
    keyring = Keyring()
    gc.disable()  # a collection inside one timed call is noise
    with contextlib.ExitStack() as stack:
        serve = server_for(server, keyring, dict(os.environ))
        call = caller(kind, stack.enter_context(serve), keyring, stack)
        print("ready", flush=True)
        for line in sys.stdin:
            if not line.strip():
                break
            print(repr(call(int(line))), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

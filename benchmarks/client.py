"""End-to-end round trips: plain requests.Session vs MicroServiceClient.

One Flask handler echoes the request body (``benchmarks/echo_app.py``):
plaintext requests reach it directly, sealed requests reach it through
EncryptionMiddleware (with its default host-wide replay store). A plain
``requests.Session`` and a ``MicroServiceClient`` each keep one keep-alive
connection to the same server; their calls alternate one by one, and each
size reports the median (p50) of each side, their ratio and the microseconds
the client, the envelope and the middleware add together. The bar is a ratio
of at most 1.10 at every size; the goal 1.05.

It runs twice, on two real servers on 127.0.0.1:

* waitress, in this process (one CPU for client and server: every
  microsecond of either side shows);
* gunicorn with one ``gthread`` worker, in its own process (what our users
  run; client and server work on two cores).

werkzeug's development server closes every connection, so it cannot show
keep-alive.
"""

from __future__ import annotations

import contextlib
import gc
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Callable

import requests

from mscomm_sync.client import MicroServiceClient
from mscomm_sync.envelope import Envelope, target_from_url
from mscomm_sync.keyring import Keyring, generate_key
from mscomm_sync.registry import FileRegistry

from . import echo_app

SIZES = ((1024, "1 KiB", 800), (64 * 1024, "64 KiB", 500), (1024 * 1024, "1 MiB", 60))
BAR = 1.10
GOAL = 1.05


@contextlib.contextmanager
def _waitress(keyring: Keyring) -> Iterator[str]:
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
def _gunicorn(keys: dict[str, str]) -> Iterator[str]:
    """Serve the echo app with gunicorn (one gthread worker, keep-alive) on 127.0.0.1."""
    root = Path(__file__).resolve().parent.parent
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    env = {**os.environ, "PYTHONPATH": str(root)}
    env.update({f"{name.upper()}_ENCRYPTION_KEY": key for name, key in keys.items()})
    argv = [sys.executable, "-m", "gunicorn", "--bind", f"fd://{sock.fileno()}"]
    argv += ["--workers", "1", "--worker-class", "gthread", "--threads", "4"]
    argv += ["--keep-alive", "60", "--log-level", "warning", "benchmarks.echo_app:create()"]
    proc = subprocess.Popen(argv, env=env, cwd=str(root), pass_fds=(sock.fileno(),))
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


def _p50s(contenders: list[Callable[[], float]], number: int) -> list[float]:
    """Alternate the contenders call by call; return each one's median seconds."""
    for _ in range(5):
        for run in contenders:
            run()
    samples: list[list[float]] = [[] for _ in contenders]
    for _ in range(number):
        for i, run in enumerate(contenders):
            samples[i].append(run())
    return [statistics.median(s) for s in samples]


def main() -> None:
    """Run the comparison at 1 KiB, 64 KiB and 1 MiB on both servers; print p50s and ratios."""
    keys = {"orders": generate_key(), "billing": generate_key()}
    keyring = Keyring.from_mapping(keys)
    worst = 0.0
    for name, serve in (
        ("waitress, in this process", lambda: _waitress(keyring)),
        ("gunicorn gthread, its own process", lambda: _gunicorn(keys)),
    ):
        print(f"\n{name}:")
        with serve() as base:
            worst = max(worst, _compare(base, keyring))
    print(f"\nworst ratio {worst:.3f} (bar {BAR}, goal {GOAL})")
    print(
        "server+wire: a plain Session sending pre-sealed requests, minus plain (the "
        "middleware and envelope headers);\nclient: MicroServiceClient minus that "
        "(sealing, opening and the call loop, net of the Session machinery it skips)."
    )


def _compare(base: str, keyring: Keyring) -> float:
    """Print one server's table; return its worst ratio."""
    orders = Envelope("orders", keyring=keyring)
    clock = time.perf_counter
    with tempfile.TemporaryDirectory() as tmp:
        registry = FileRegistry(Path(tmp) / "registry.json")
        registry.register("billing", base)
        session = requests.Session()
        sealed_session = requests.Session()
        client = MicroServiceClient("orders", registry=registry, keyring=keyring)
        url = base + "/echo"
        target = target_from_url(url)
        print(
            f"{'size':>7} {'Session p50':>12} {'client p50':>11} {'ratio':>6} {'added':>8}"
            f" {'server+wire':>12} {'client':>8}  (bar {BAR}, goal {GOAL})"
        )
        worst = 0.0
        gc_was = gc.isenabled()
        gc.disable()
        try:
            for size, label, number in SIZES:
                body = bytes(size)

                def plain(body: bytes = body) -> float:
                    start = clock()
                    resp = session.post(url, data=body)
                    assert resp.status_code == 200 and len(resp.content) == len(body)
                    return clock() - start

                def ours(body: bytes = body) -> float:
                    start = clock()
                    resp = client.request(
                        target_service="billing", endpoint="/echo", method="POST", payload=body
                    )
                    assert resp.status_code == 200 and len(resp.content) == len(body)
                    return clock() - start

                def presealed(body: bytes = body) -> float:
                    # What a client with zero overhead of its own would still pay:
                    # the middleware and the envelope's bytes on the wire.
                    sealed = orders.seal_request(
                        recipient="billing", method="POST", target=target, body=body,
                        content_type="application/octet-stream",
                    )  # fmt: skip
                    start = clock()
                    resp = sealed_session.post(url, data=sealed.body, headers=sealed.headers)
                    assert resp.status_code == 200 and len(resp.content) == len(body) + 16
                    return clock() - start

                t_plain, t_ours, t_pre = _p50s([plain, ours, presealed], number)
                ratio = t_ours / t_plain
                worst = max(worst, ratio)
                verdict = "ok" if ratio <= BAR else "OVER BAR"
                print(
                    f"{label:>7} {t_plain * 1e6:>10.0f}us {t_ours * 1e6:>9.0f}us {ratio:>6.3f}"
                    f" {(t_ours - t_plain) * 1e6:>+6.0f}us {(t_pre - t_plain) * 1e6:>+10.0f}us"
                    f" {(t_ours - t_pre) * 1e6:>+6.0f}us  {verdict}",
                    flush=True,
                )
        finally:
            if gc_was:
                gc.enable()
            client.close()
            session.close()
            sealed_session.close()
            registry.close()
    return worst


if __name__ == "__main__":
    main()

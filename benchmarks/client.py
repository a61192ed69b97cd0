"""End-to-end round trips: plain requests.Session vs MicroServiceClient.

One Flask handler echoes the request body. One real waitress server on
127.0.0.1 (werkzeug's development server closes every connection, so it
cannot show keep-alive) serves it twice over: plaintext requests reach the handler
directly, sealed requests reach it through EncryptionMiddleware (with its
default host-wide replay store). A plain ``requests.Session`` and a
``MicroServiceClient`` each keep one keep-alive connection to it; their calls
alternate one by one, and each size reports the median (p50) of each side,
their ratio and the microseconds the client, the envelope and the middleware
add together. The bar is a ratio of at most 1.10 at every size; the goal 1.05.
"""

from __future__ import annotations

import contextlib
import gc
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import requests

from mscomm_sync.client import MicroServiceClient
from mscomm_sync.envelope import Envelope, target_from_url
from mscomm_sync.keyring import Keyring, generate_key
from mscomm_sync.registry import FileRegistry
from mscomm_sync.wsgi import EncryptionMiddleware

SIZES = ((1024, "1 KiB", 800), (64 * 1024, "64 KiB", 500), (1024 * 1024, "1 MiB", 60))
BAR = 1.10
GOAL = 1.05


def _app(keyring: Keyring) -> Callable[..., Any]:
    from flask import Flask, request

    flask_app = Flask("bench")

    @flask_app.post("/echo")
    def echo() -> Any:
        return flask_app.response_class(request.get_data(), mimetype="application/octet-stream")

    plain = flask_app.wsgi_app
    sealed = EncryptionMiddleware(plain, "billing", keyring=keyring)

    def dispatch(environ: dict[str, Any], start_response: Any) -> Any:
        if "HTTP_X_ENCRYPTED_PAYLOAD" in environ:
            return sealed(environ, start_response)
        return plain(environ, start_response)

    return dispatch


@contextlib.contextmanager
def _serve(app: Callable[..., Any]) -> Iterator[str]:
    from waitress.server import create_server

    server = create_server(
        app,
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
    """Run the comparison at 1 KiB, 64 KiB and 1 MiB and print p50s and ratios."""
    keyring = Keyring.from_mapping({"orders": generate_key(), "billing": generate_key()})
    orders = Envelope("orders", keyring=keyring)
    clock = time.perf_counter
    with tempfile.TemporaryDirectory() as tmp, _serve(_app(keyring)) as base:
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
        print(f"worst ratio {worst:.3f} (bar {BAR}, goal {GOAL})")
        print(
            "server+wire: a plain Session sending pre-sealed requests, minus plain (the "
            "middleware and envelope headers);\nclient: MicroServiceClient minus that "
            "(sealing, opening and the call loop, net of the Session machinery it skips)."
        )


if __name__ == "__main__":
    main()

"""What telemetry costs per call: off, OpenTelemetry's no-op API, and its SDK.

Four contenders make the same sealed (protocol v2) 1 KiB POST through a real
waitress server in this process, each with its own client and middleware,
alternating call by call so that the machine's drift falls on all alike:

* **off**: ``telemetry=False`` on both sides, the baseline. OpenTelemetry is
  never imported on this path, so it is also the cost when it is not
  installed; what the hooks themselves still do (the context fields every
  v2 call seals, the do-nothing records) is timed on its own below;
* **access log**: the access lines on, written to a handler that drops them;
* **no-op API**: ``Telemetry()`` with no SDK installed as the global
  provider, which is what a library user without an SDK runs;
* **SDK**: the real SDK, every span sampled and handed to a batch processor
  whose exporter drops it, metrics kept by an in-memory reader.

Each reports its median per call and its ratio to **off** measured in the
same run. The hooks alone are then timed in a loop, without any I/O: the
records a call and a request make when nothing is reported, and the context
fields an attempt seals (``plan_call``'s share is a few dictionary lookups).
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable, Optional

from mscomm_sync import FileRegistry, MicroServiceClient, Telemetry
from mscomm_sync.keyring import Keyring
from mscomm_sync.replay import MemoryReplayStore
from mscomm_sync.telemetry.calls import NO_ATTEMPT, start_call
from mscomm_sync.telemetry.context import Serving
from mscomm_sync.telemetry.instruments import Instruments
from mscomm_sync.telemetry.serving import start_request
from mscomm_sync.trust import Identity, TrustStore, generate_private_key
from mscomm_sync.wsgi import EncryptionMiddleware

from .timing import alternating_calls, per_call

SIZE = 1024
NUMBER = 1500
WARMUP = 50
HOOK_NUMBER = 200_000
BODY = bytes(SIZE)


def echo(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    return [body]


class _Keys:
    """orders' and billing's v2 key pairs."""

    def __init__(self) -> None:
        self.private = {n: generate_private_key() for n in ("orders", "billing")}

    def identity(self, name: str) -> Identity:
        return Identity(name, keys=[self.private[name]])

    def trust(self, name: str) -> TrustStore:
        key = self.private[name].public.text
        return TrustStore(environ={f"{name.upper()}_PUBLIC_KEY": key})


def _sdk() -> Optional[tuple[Any, Any]]:
    """A TracerProvider and a MeterProvider of the SDK (``None`` if it is not installed)."""
    try:
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import (
            BatchSpanProcessor,
            SpanExporter,
            SpanExportResult,
        )
    except ImportError:
        return None

    class Drop(SpanExporter):
        def export(self, spans: Any) -> Any:
            return SpanExportResult.SUCCESS

    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(BatchSpanProcessor(Drop()))
    return tracer_provider, MeterProvider(metric_readers=[InMemoryMetricReader()])


@contextlib.contextmanager
def _waitress(app: Callable[..., Any]) -> Iterator[str]:
    from waitress.server import create_server

    server = create_server(app, host="127.0.0.1", port=0, threads=4)
    stopping = threading.Event()

    def run() -> None:
        try:
            server.run()
        except (OSError, ValueError):
            if not stopping.is_set():
                raise

    thread = threading.Thread(target=run, name="bench-telemetry", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.effective_port}"
    finally:
        stopping.set()
        server.close()
        thread.join(5)


def _contenders(stack: contextlib.ExitStack) -> dict[str, Callable[[], float]]:
    keys = _Keys()
    settings: dict[str, Telemetry] = {
        "off": Telemetry.off(),
        "access log": Telemetry(otel=False, access_log=True),
        "no-op API": Telemetry(),
    }
    sdk = _sdk()
    if sdk is not None:
        settings["SDK"] = Telemetry(tracer_provider=sdk[0], meter_provider=sdk[1])
        stack.callback(sdk[0].shutdown)
        stack.callback(sdk[1].shutdown)
    middlewares = {
        f"/{i}/echo": EncryptionMiddleware(
            echo, "billing", identity=keys.identity("billing"), trust=keys.trust("orders"),
            keyring=Keyring.from_mapping({}), versions=("2",), allowed_callers=["orders"],
            replay_store=MemoryReplayStore(), telemetry=telemetry,
        )
        for i, telemetry in enumerate(settings.values())
    }  # fmt: skip

    def dispatch(environ: dict[str, Any], start_response: Any) -> Any:
        return middlewares[environ["PATH_INFO"]](environ, start_response)

    base = stack.enter_context(_waitress(dispatch))
    tmp = stack.enter_context(tempfile.TemporaryDirectory())
    registry = stack.enter_context(contextlib.closing(FileRegistry(Path(tmp) / "r.json")))
    registry.register("billing", base)
    calls: dict[str, Callable[[], float]] = {}
    for i, (name, telemetry) in enumerate(settings.items()):
        client = MicroServiceClient(
            "orders", registry=registry, identity=keys.identity("orders"),
            trust=keys.trust("billing"), keyring=Keyring.from_mapping({}), telemetry=telemetry,
        )  # fmt: skip
        stack.callback(client.close)
        calls[name] = _timed(client, f"/{i}/echo")
    return calls


def _timed(client: MicroServiceClient, endpoint: str) -> Callable[[], float]:
    def call() -> float:
        start = time.perf_counter()
        resp = client.request(
            target_service="billing", endpoint=endpoint, method="POST", payload=BODY
        )
        assert resp.status_code == 200 and len(resp.content) == SIZE
        return time.perf_counter() - start

    return call


def _quiet_access_logs(stack: contextlib.ExitStack) -> None:
    """Let access lines be formatted and handled, by a handler that drops them."""
    for name in ("mscomm_sync.access.client", "mscomm_sync.access.server"):
        logger = logging.getLogger(name)
        handler = logging.NullHandler()
        old_level, old_propagate = logger.level, logger.propagate
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False

        def restore(
            lg: logging.Logger = logger,
            h: logging.Handler = handler,
            level: int = old_level,
            propagate: bool = old_propagate,
        ) -> None:
            lg.removeHandler(h)
            lg.setLevel(level)
            lg.propagate = propagate  # fmt: skip

        stack.callback(restore)


def round_trips() -> dict[str, float]:
    """Return each contender's median seconds per call."""
    with contextlib.ExitStack() as stack:
        _quiet_access_logs(stack)
        calls = _contenders(stack)
        return alternating_calls(calls, warmup=WARMUP, number=NUMBER)


def hooks_when_off() -> float:
    """Return the seconds per call of what the hooks do with telemetry off, without I/O."""
    off = Instruments(Telemetry.off())
    describe: Callable[[Any], tuple[str, Optional[str]]] = lambda environ: ("", None)  # noqa: E731

    def one() -> None:
        record = start_call(
            off, service="orders", target="billing", method="POST", path="/echo",
            request_id="0123456789abcdef",
        )  # fmt: skip
        with record:
            attempt = record.attempt("http://127.0.0.1:1", 1, "first", "")
            with attempt:
                attempt.context_headers(None, 9.5)
                attempt.sealed_with("2")
                attempt.answered(200, True)
            record.answered(200)
        served = start_request(off, "billing", describe)
        with served.serving(None), Serving(None):
            pass
        served.finish({})

    assert NO_ATTEMPT.context_headers(None, 1.0)
    return per_call(one, HOOK_NUMBER)


def main() -> None:
    """Print the per-call figures and their ratios to telemetry off."""
    medians = round_trips()
    base = medians["off"]
    print(f"sealed v2 POST of {SIZE} bytes, waitress in this process, {NUMBER} calls each:")
    print(f"{'telemetry':>12} {'p50':>9} {'ratio':>7} {'added':>9}")
    for name, seconds in medians.items():
        print(
            f"{name:>12} {seconds * 1e6:>7.0f}us {seconds / base:>7.3f}"
            f" {(seconds - base) * 1e6:>+7.0f}us",
            flush=True,
        )
    hooks = hooks_when_off()
    print(
        f"hooks with telemetry off, alone: {hooks * 1e6:.2f}us per call and request"
        f" ({hooks / base:.2%} of the off call)"
    )


if __name__ == "__main__":
    main()

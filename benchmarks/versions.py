"""What protocol v2 costs a whole call, beside v1: with no headers, and with ten.

Four contenders make the same sealed 1 KiB POST through one real waitress
server in this process (one ``EncryptionMiddleware`` speaking both versions),
alternating call by call so that the machine's drift falls on all alike:
v1 and v2, each with no headers of the caller's own and with ten ordinary
end-to-end headers (``benchmarks.crypto.HEADERS``, with ``x-order`` in place of
``idempotency-key``, which only v2 may send). v1 sends the headers in
clear beside the seal; v2 seals them. The pair's key is cached after the
first call (the warm-up); what a first call to a new peer costs is in
``benchmarks/crypto.py``. Telemetry is off on both sides.

Each reports its median per call and its ratio to v1 with the same headers.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from pathlib import Path
from typing import Callable, Optional

from mscomm_sync import FileRegistry, MicroServiceClient, Telemetry
from mscomm_sync.keyring import Keyring, generate_key
from mscomm_sync.replay import MemoryReplayStore
from mscomm_sync.wsgi import EncryptionMiddleware

from .crypto import HEADERS
from .telemetry import _Keys, _waitress, echo
from .timing import alternating_calls

SIZE = 1024
NUMBER = 1500
WARMUP = 50
BODY = bytes(SIZE)


def _contenders(stack: contextlib.ExitStack) -> dict[str, Callable[[], float]]:
    keys = _Keys()
    ring = Keyring.from_mapping({"orders": generate_key(), "billing": generate_key()})
    off = Telemetry.off()
    app = EncryptionMiddleware(
        echo, "billing", identity=keys.identity("billing"), trust=keys.trust("orders"),
        keyring=ring, allowed_callers=["orders"], replay_store=MemoryReplayStore(),
        telemetry=off,
    )  # fmt: skip
    base = stack.enter_context(_waitress(app))
    tmp = stack.enter_context(tempfile.TemporaryDirectory())
    registry = stack.enter_context(contextlib.closing(FileRegistry(Path(tmp) / "r.json")))
    registry.register("billing", base)
    v1 = MicroServiceClient("orders", registry=registry, keyring=ring, telemetry=off)
    v2 = MicroServiceClient(
        "orders", registry=registry, identity=keys.identity("orders"),
        trust=keys.trust("billing"), keyring=Keyring.from_mapping({}), telemetry=off,
    )  # fmt: skip
    stack.callback(v1.close)
    stack.callback(v2.close)
    # Ten headers for both: an Idempotency-Key is a sealed-only feature (v1 refuses
    # to send one unsealed), so it is swapped for an ordinary header of its size.
    headers = {name: value for name, value in HEADERS if name != "idempotency-key"}
    headers["x-order"] = "order-42-charge"
    return {
        "v1": _timed(v1, None, "1"),
        "v2": _timed(v2, None, "2"),
        "v1, 10 headers": _timed(v1, headers, "1"),
        "v2, 10 headers": _timed(v2, headers, "2"),
    }


def _timed(
    client: MicroServiceClient, headers: Optional[dict[str, str]], version: str
) -> Callable[[], float]:
    def call() -> float:
        start = time.perf_counter()
        resp = client.request(
            target_service="billing", endpoint="/echo", method="POST", payload=BODY,
            headers=headers,
        )  # fmt: skip
        assert resp.status_code == 200 and len(resp.content) == SIZE
        return time.perf_counter() - start

    first = client.request(target_service="billing", endpoint="/echo", method="POST")
    # A v2 answer keeps only the headers sealed in it; a v1 answer keeps waitress's too.
    assert ("Server" not in first.headers) == (version == "2"), version
    return call


def round_trips() -> dict[str, float]:
    """Return each contender's median seconds per call."""
    with contextlib.ExitStack() as stack:
        calls = _contenders(stack)
        return alternating_calls(calls, warmup=WARMUP, number=NUMBER)


def main() -> None:
    """Print the per-call figures, v2 beside v1."""
    medians = round_trips()
    print(f"sealed POST of {SIZE} bytes, waitress in this process, {NUMBER} calls each:")
    print(f"{'protocol':>15} {'p50':>9} {'v2 / v1':>8} {'v2 - v1':>9}")
    for name, seconds in medians.items():
        v1 = medians[name.replace("v2", "v1")]
        print(
            f"{name:>15} {seconds * 1e6:>7.0f}us {seconds / v1:>8.3f}"
            f" {(seconds - v1) * 1e6:>+7.0f}us",
            flush=True,
        )


if __name__ == "__main__":
    main()

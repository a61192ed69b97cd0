"""Cache misses per sealed call when it arrives cold: the memory a call touches, simulated.

``python -m benchmarks footprint`` runs each side of a sealed 1 KiB POST
(protocol v1) under ``valgrind --tool=callgrind --cache-sim=yes`` and
counts, per call, the instructions and the cache misses of that call alone:

* **server**: ``EncryptionMiddleware`` (memory replay store) around a 1 KiB
  app, called in-process with pre-sealed requests; the baseline is the bare
  app with the plaintext request;
* **client**: ``MicroServiceClient.request`` against ``instructions``'
  waitress server in a process of its own; the baseline is a plain
  ``requests.Session`` POST to the same server's unsealed ``/plain`` echo.

The measured processes run scripts held here, as ``instructions``' do, so an
older checkout runs exactly this harness.

Before each measured call the process writes :data:`EVICT` bytes, twice the
simulated last-level cache, as a server that slept while other processes ran
finds its caches. What the call then costs is mostly the memory it touches
(each last-level miss is a trip to the shared cache or to memory, about
100 ns on the development VM), which an instruction count does not show and
a timing on a shared VM cannot resolve. The simulated geometry is the
development VM's core: 32 KiB L1i, 48 KiB L1d, 2 MiB L2 (as "LL"). Counting
starts and stops at an ``operator.call`` around the call
(``--toggle-collect=_operator_call``), so set-up and the eviction are not
counted. Repeated runs agree to within about 15 misses on the server and
70 on the client.

``MSCOMM_BENCH_SIDES=server`` (or ``client``) measures one side only.
With ``MSCOMM_BENCH_CODE=<dir>`` it measures another checkout of the package
(a ``git worktree`` of an earlier commit), as ``instructions`` does. It
needs valgrind and Python 3.11 or later (``operator.call``), so it is not
part of ``make bench``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from .instructions import CHECK, SERVER, _environment, _port, measured_code

CALLS = 10
WARMUP = 30
#: Bytes written before each measured call: twice the simulated last-level cache.
EVICT = 4 * 1024 * 1024
CACHES = ("--I1=32768,8,64", "--D1=49152,12,64", "--LL=2097152,16,64")

#: The server side, in-process: argv is ours|bare, calls, warm-up, evict.
IN_PROCESS = (
    CHECK
    + r"""
import io, operator, os, sys
from mscomm_sync import Envelope
from mscomm_sync.envelope import target_from_url
from mscomm_sync.replay import MemoryReplayStore
from mscomm_sync.wsgi import EncryptionMiddleware

kind, calls, warmup, evict = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
ANSWER = b"x" * 1024

def app(environ, start_response):
    environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    start_response("200 OK", [("Content-Type", "application/json")])
    return [ANSWER]

def start_response(status, headers, exc_info=None):
    return None

TEMPLATE = {
    "REQUEST_METHOD": "POST", "SCRIPT_NAME": "", "PATH_INFO": "/api/v1/charge",
    "QUERY_STRING": "order=42", "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8000",
    "SERVER_PROTOCOL": "HTTP/1.1", "HTTP_HOST": "127.0.0.1:8000", "wsgi.url_scheme": "http",
    "wsgi.errors": io.StringIO(), "wsgi.multithread": True, "wsgi.multiprocess": False,
    "wsgi.run_once": False,
}
body = os.urandom(1024)
environs = []
if kind == "ours":
    sender = Envelope("orders")
    target = target_from_url("http://127.0.0.1:8000/api/v1/charge?order=42")
    wsgi = EncryptionMiddleware(app, "billing", replay_store=MemoryReplayStore(),
                                allowed_callers=["orders"])
    for _ in range(warmup + calls):
        sealed = sender.seal_request(recipient="billing", method="POST", target=target,
                                     body=body, content_type="text/plain")
        environ = dict(TEMPLATE)
        environ.update({"HTTP_" + k.upper().replace("-", "_"): v
                        for k, v in sealed.headers.items() if k != "Content-Type"})
        environ.update(CONTENT_TYPE="application/vnd.mscomm.sealed",
                       CONTENT_LENGTH=str(len(sealed.body)))
        environ["wsgi.input"] = io.BytesIO(sealed.body)
        environs.append(environ)
else:
    wsgi = app
    for _ in range(warmup + calls):
        environ = dict(TEMPLATE, CONTENT_TYPE="text/plain", CONTENT_LENGTH="1024")
        environ["wsgi.input"] = io.BytesIO(body)
        environs.append(environ)

def call(environ):
    statuses = []
    def noted(status, headers, exc_info=None):
        statuses.append(status)
    answer = b"".join(wsgi(environ, noted))
    assert statuses == ["200 OK"] and len(answer) >= 1024, statuses

for environ in environs[:warmup]:
    call(environ)
scratch, zeros = bytearray(evict), bytes(evict)
for environ in environs[warmup:]:
    scratch[:] = zeros
    operator.call(call, environ)
"""
)

#: The client side: argv is port, ours|bare, calls, warm-up, evict.
CLIENT = (
    CHECK
    + r"""
import operator, sys, tempfile, time
from pathlib import Path
import requests
from mscomm_sync.client import MicroServiceClient
from mscomm_sync.registry import FileRegistry

port, kind, calls = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
warmup, evict = int(sys.argv[4]), int(sys.argv[5])
body = bytes(1024)
if kind == "ours":
    registry = FileRegistry(Path(tempfile.mkdtemp()) / "r.json")
    registry.register("billing", f"http://127.0.0.1:{port}")
    client = MicroServiceClient("orders", registry=registry)

    def call():
        resp = client.request(target_service="billing", endpoint="/echo", method="POST",
                              payload=body)
        assert resp.status_code == 200 and resp.content == body, resp.status_code
else:
    session = requests.Session()
    url = f"http://127.0.0.1:{port}/plain"

    def call():
        resp = session.post(url, data=body)
        assert resp.status_code == 200 and resp.content == body, resp.status_code

time.sleep(1.2)  # a new replay table refuses its first second
for _ in range(warmup):
    call()
scratch, zeros = bytearray(evict), bytes(evict)
for _ in range(calls):
    scratch[:] = zeros
    operator.call(call)
"""
)


def _misses(out: Path) -> dict[str, int]:
    text = out.read_text()
    events = re.search(r"^events: (.+)$", text, re.M)
    totals = re.search(r"^(?:summary|totals): (.+)$", text, re.M)
    if events is None or totals is None:
        raise RuntimeError(f"no totals in {out}")
    return dict(zip(events.group(1).split(), map(int, totals.group(1).split())))


def simulate(side: str, kind: str, code: Path, work: Path) -> dict[str, int]:
    """Return callgrind's event totals for ``CALLS`` cold calls of ``side`` (``ours``/``bare``)."""
    env = _environment(code)
    out = work / f"{side}-{kind}.out"
    valgrind = [
        "valgrind", "--tool=callgrind", "--cache-sim=yes", *CACHES, "--collect-atstart=no",
        "--toggle-collect=_operator_call", f"--callgrind-out-file={out}",
    ]  # fmt: skip
    counts = [str(CALLS), str(WARMUP), str(EVICT)]
    if side == "server":
        argv = [*valgrind, sys.executable, "-c", IN_PROCESS, kind, *counts]
        _run(argv, env, work)
        return _misses(out)
    port_file = work / f"{kind}.port"
    server_argv = [sys.executable, "-c", SERVER, str(port_file)]
    quiet = subprocess.DEVNULL
    server = subprocess.Popen(server_argv, env=env, cwd=work, stdout=quiet, stderr=quiet)
    try:
        port = str(_port(port_file, server))
        argv = [*valgrind, sys.executable, "-c", CLIENT, port, kind, *counts]
        _run(argv, env, work)
    finally:
        server.kill()
        server.wait(30)
    return _misses(out)


def _run(argv: list[str], env: dict[str, str], work: Path) -> None:
    done = subprocess.run(argv, env=env, cwd=work, capture_output=True, timeout=900)
    if done.returncode != 0:
        tail = done.stderr.decode(errors="replace")[-4000:]
        raise RuntimeError(f"the measured process failed (exit {done.returncode}):\n{tail}")


def _row(label: str, events: dict[str, int]) -> tuple[str, int, int, int]:
    l1 = events["I1mr"] + events["D1mr"] + events["D1mw"]
    ll = events["ILmr"] + events["DLmr"] + events["DLmw"]
    return label, events["Ir"] // CALLS, l1 // CALLS, ll // CALLS


def main() -> None:
    """Print instructions and cache misses per cold call, ours against the bare baseline."""
    if sys.version_info < (3, 11):
        raise SystemExit("benchmarks/footprint.py needs Python 3.11+ (operator.call)")
    code = measured_code()
    sides = os.environ.get("MSCOMM_BENCH_SIDES", "server,client").split(",")
    if not set(sides) <= {"server", "client"}:
        raise SystemExit("MSCOMM_BENCH_SIDES names server and/or client, comma-separated")
    print(f"code: {code}; 1 KiB POST, protocol v1, {CALLS} calls")
    print(f"each after writing {EVICT >> 20} MiB; simulated L1i 32 KiB, L1d 48 KiB, LL 2 MiB")
    print(f"{'':>14} {'instructions':>12} {'L1 misses':>10} {'LL misses':>10}")
    with tempfile.TemporaryDirectory() as tmp:
        for side in sides:
            rows = [_row(f"{side} {kind}", simulate(side, kind, code, Path(tmp)))
                    for kind in ("bare", "ours")]  # fmt: skip
            for label, instructions, l1, ll in rows:
                print(f"{label:>14} {instructions:>12,} {l1:>10,} {ll:>10,}")
            added = [ours - bare for bare, ours in zip(rows[0][1:], rows[1][1:])]
            print(f"{side + ' added':>14} {added[0]:>12,} {added[1]:>10,} {added[2]:>10,}")


if __name__ == "__main__":
    main()

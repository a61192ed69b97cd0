"""Instructions per sealed call, counted by valgrind: the figure the machine's load cannot move.

``python -m benchmarks instructions`` counts, with ``valgrind
--tool=callgrind``, the instructions one 1 KiB sealed POST (protocol v1)
costs each side:

* **client**: a ``MicroServiceClient`` process under valgrind calls a
  waitress server in a process of its own;
* **server**: the waitress process (``EncryptionMiddleware`` around a
  plain WSGI echo, memory replay store) runs under valgrind while a client
  outside it calls.

Each side is run for ``CALLS`` calls and for none (both after the same
warm-up), and the difference is divided by ``CALLS``, so start-up and
imports cancel out. Timings on a shared VM move by more than the
differences a change makes to the client; these counts repeat to within
about 0.1%. With ``MSCOMM_BENCH_CODE=<dir>`` it measures another checkout
of the package (a ``git worktree`` of an earlier commit, say) with this
virtualenv, for a before-and-after figure. It needs valgrind (Debian ``valgrind``), so it is
not part of ``make bench``. The server and client are scripts held here
rather than ``benchmarks/`` modules, so an older checkout runs exactly the
same harness as this one.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mscomm_sync.keyring import env_var_name, generate_key

CALLS = 300
WARMUP = 20

#: Run first in both processes: the package measured is the one asked for.
CHECK = r"""
import os, mscomm_sync
found = os.path.realpath(os.path.dirname(mscomm_sync.__file__))
assert found == os.environ["MSCOMM_BENCH_EXPECT"], f"measuring {found}, not the code asked for"
"""

SERVER = (
    CHECK
    + r"""
import os, sys, threading
from waitress.server import create_server
from mscomm_sync.replay import MemoryReplayStore
from mscomm_sync.wsgi import EncryptionMiddleware

def echo(environ, start_response):
    body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    start_response("200 OK", [("Content-Type", "application/octet-stream"),
                              ("Content-Length", str(len(body)))])
    return [body]

try:
    sealed = EncryptionMiddleware(echo, "billing", replay_store=MemoryReplayStore(),
                                  allowed_callers=["orders"])
except TypeError:  # a checkout from before allowed_callers
    sealed = EncryptionMiddleware(echo, "billing", replay_store=MemoryReplayStore())

def app(environ, start_response):
    if environ["PATH_INFO"] == "/plain":  # footprint's baseline: the echo unsealed
        return echo(environ, start_response)
    if environ["PATH_INFO"] == "/quit":
        threading.Timer(0.2, os._exit, (0,)).start()
        start_response("200 OK", [("Content-Length", "0")])
        return [b""]
    return sealed(environ, start_response)

server = create_server(app, host="127.0.0.1", port=0, threads=1)
with open(sys.argv[1] + ".tmp", "w") as f:
    f.write(str(server.effective_port))
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
server.run()
"""
)

CLIENT = (
    CHECK
    + r"""
import sys, tempfile, time
from pathlib import Path
import requests
from mscomm_sync.client import MicroServiceClient
from mscomm_sync.registry import FileRegistry

port, calls, warmup, quit_after = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
registry = FileRegistry(Path(tempfile.mkdtemp()) / "r.json")
registry.register("billing", f"http://127.0.0.1:{port}")
client = MicroServiceClient("orders", registry=registry)
body = bytes(1024)
time.sleep(1.2)  # a new replay table refuses its first second
for _ in range(warmup + calls):
    resp = client.request(target_service="billing", endpoint="/echo", method="POST", payload=body)
    assert resp.status_code == 200 and resp.content == body, resp.status_code
if quit_after == "quit":
    try:
        requests.get(f"http://127.0.0.1:{port}/quit", timeout=2)
    except requests.RequestException:
        pass
"""
)


def measured_code() -> Path:
    """Return the checkout to measure: ``$MSCOMM_BENCH_CODE``, else this one.

    Raises:
        SystemExit: valgrind is not installed.
    """
    if shutil.which("valgrind") is None:
        raise SystemExit("this benchmark needs valgrind (apt-get install valgrind)")
    here = Path(__file__).resolve().parent.parent
    return Path(os.environ.get("MSCOMM_BENCH_CODE") or here).resolve()


def _environment(code: Path) -> dict[str, str]:
    """The measured processes' environment: ``code`` first on the path, which CHECK verifies."""
    env = dict(os.environ, PYTHONHASHSEED="0", PYTHONPATH=str(code))
    env["MSCOMM_BENCH_EXPECT"] = os.path.realpath(code / "mscomm_sync")
    for name in ("orders", "billing"):
        env[env_var_name(name)] = generate_key()
    return env


def _port(path: Path, proc: subprocess.Popen[bytes]) -> int:
    deadline = time.monotonic() + 120  # the server may start under valgrind
    while not path.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the server did not start (exit {proc.poll()})")
        time.sleep(0.1)
    return int(path.read_text())


def _total(out: Path) -> int:
    match = re.search(r"^(?:summary|totals): (\d+)", out.read_text(), re.M)
    if match is None:
        raise RuntimeError(f"no totals in {out}")
    return int(match.group(1))


def count(side: str, calls: int, code: Path, work: Path) -> int:
    """Return the instructions ``side`` (client or server) spent in a run of ``calls`` calls.

    Both processes run in ``work``: ``python -c`` puts its working directory
    first on ``sys.path``, so run from a checkout it would import that
    checkout's package whatever ``PYTHONPATH`` says.
    """
    env = _environment(code)
    out, port_file = work / f"{side}-{calls}.out", work / f"{side}-{calls}.port"
    valgrind = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"]
    server_argv = [sys.executable, "-c", SERVER, str(port_file)]
    client_argv = [sys.executable, "-c", CLIENT]
    quiet = subprocess.DEVNULL
    if side == "client":
        server = subprocess.Popen(server_argv, env=env, cwd=work, stdout=quiet, stderr=quiet)
        try:
            port = str(_port(port_file, server))
            argv = [*valgrind, *client_argv, port, str(calls), str(WARMUP), "stay"]
            subprocess.run(
                argv, env=env, cwd=work, check=True, timeout=600, stdout=quiet, stderr=quiet
            )
        finally:
            server.kill()
            server.wait(30)
    else:
        argv = [*valgrind, *server_argv]
        server = subprocess.Popen(argv, env=env, cwd=work, stdout=quiet, stderr=quiet)
        try:
            port = str(_port(port_file, server))
            argv = [*client_argv, port, str(calls), str(WARMUP), "quit"]
            subprocess.run(argv, env=env, cwd=work, check=True, timeout=600)
            server.wait(120)
        finally:
            if server.poll() is None:
                server.kill()
                server.wait(30)
    return _total(out)


def main() -> None:
    """Print the instructions per call of each side, for this checkout or $MSCOMM_BENCH_CODE."""
    code = measured_code()
    print(f"code: {code}; 1 KiB POST, protocol v1, {CALLS} calls minus 0 calls")
    with tempfile.TemporaryDirectory() as tmp:
        for side in ("client", "server"):
            per_call = count(side, CALLS, code, Path(tmp)) - count(side, 0, code, Path(tmp))
            print(f"{side:>7}: {per_call // CALLS:>10,} instructions per call")

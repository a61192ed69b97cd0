"""How many of our functions one sealed call runs: a budget, so none is added unnoticed.

A call that reaches a process whose caches went cold while it waited pays for
every distinct function it runs: each is a code object, its bytecode and its
globals, fetched from memory (about 10 last-level cache misses, 1 µs, each;
``docs/performance.md``, "What the layering costs"). The split into
``envelope/``, ``wsgi/`` and ``client/`` has a measured price in those terms
(measured there against the same code folded; whether to pay it is the
project's decision, issue 13); these budgets keep it from growing unnoticed.

The counts are of distinct functions defined in this package's files run by
one warm call, traced with :func:`sys.setprofile` (deterministic, no timing),
with the defaults a service gets when no ``MSCOMM_*`` variable says otherwise
(telemetry off, no trust file). Code generated at run time (the records'
``_make``, attrs' methods) and the app, requests, urllib3 and the standard
library are not counted. Python 3.12 inlines comprehensions, so newer Pythons
count at most as many. A change that adds a function to one of these paths
must raise its budget here and say in ``docs/performance.md`` what the
function buys.
"""

from __future__ import annotations

import gc
import io
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest
from support.apps import echo
from support.sealing import keyring

import mscomm_sync
from mscomm_sync.client import MicroServiceClient
from mscomm_sync.envelope import Envelope, target_from_url
from mscomm_sync.registry import FileRegistry
from mscomm_sync.replay import MemoryReplayStore
from mscomm_sync.telemetry import reset_telemetry
from mscomm_sync.testing import LiveServer
from mscomm_sync.wsgi import EncryptionMiddleware
from mscomm_sync.wsgi.environ import environ_key

PACKAGE = str(Path(mscomm_sync.__file__).resolve().parent)

#: The most distinct functions of ours one sealed v1 request runs in the
#: middleware, the envelope, the keyring, the replay store and the idle
#: telemetry (47 on Python 3.9 to 3.13 when it was set).
SERVER_BUDGET = 47
#: The most one ``MicroServiceClient.request`` runs, sealing, sending through
#: the mounted adapter and opening the answer (95 on the same).
CLIENT_BUDGET = 95


def functions_run(call: Callable[[], object]) -> set[str]:
    """Return the functions of this package that ``call`` runs on this thread."""
    seen: set[str] = set()

    def profile(frame: Any, event: str, arg: Any) -> None:
        code = frame.f_code
        if event == "call" and code.co_filename.startswith(PACKAGE):
            name = code.co_filename[len(PACKAGE) :]
            seen.add(f"{name}:{code.co_firstlineno}:{code.co_name}")

    # A collection in the middle would run finalisers of earlier objects, ours among them.
    collecting, before = gc.isenabled(), sys.getprofile()
    gc.collect()
    gc.disable()
    sys.setprofile(profile)
    try:
        call()
    finally:
        sys.setprofile(before)
        if collecting:
            gc.enable()
    return seen


@pytest.fixture(autouse=True)
def default_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Measure the path a service gets by default, whatever this shell's MSCOMM_* say.

    Telemetry and the access log add their records' work; a trust file is
    checked for changes once a second, so whether a call re-reads it would
    depend on the clock.
    """
    for name in ("MSCOMM_TELEMETRY", "MSCOMM_ACCESS_LOG", "MSCOMM_TRUST", "MSCOMM_TRUST_ROOT"):
        monkeypatch.delenv(name, raising=False)
    reset_telemetry()
    yield
    reset_telemetry()


def sealed_environ(sender: Envelope) -> dict[str, Any]:
    """A sealed v1 POST of 1 KiB to billing, as a WSGI server would hand it over."""
    target = target_from_url("http://127.0.0.1:8000/api/v1/charge?order=42")
    sealed = sender.seal_request(
        recipient="billing", method="POST", target=target, body=b"x" * 1024,
        content_type="application/json",
    )  # fmt: skip
    environ = {
        "REQUEST_METHOD": "POST", "SCRIPT_NAME": "", "PATH_INFO": "/api/v1/charge",
        "QUERY_STRING": "order=42", "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1", "HTTP_HOST": "127.0.0.1:8000", "wsgi.url_scheme": "http",
        "CONTENT_TYPE": "application/vnd.mscomm.sealed", "CONTENT_LENGTH": str(len(sealed.body)),
        "wsgi.input": io.BytesIO(sealed.body), "wsgi.errors": io.StringIO(),
    }  # fmt: skip
    for name, value in sealed.headers.items():
        if name != "Content-Type":
            environ[environ_key(name)] = value
    return environ


def test_a_sealed_request_runs_within_the_servers_budget() -> None:
    """One warm sealed v1 request runs at most SERVER_BUDGET of our functions, and opens."""
    sender = Envelope("orders", keyring=keyring(), versions=("1",))
    middleware = EncryptionMiddleware(
        echo, "billing", keyring=keyring(), replay_store=MemoryReplayStore(),
        allowed_callers=["orders"],
    )  # fmt: skip
    statuses: list[str] = []

    def serve(environ: dict[str, Any]) -> Callable[[], None]:
        def request() -> None:
            answer = b"".join(middleware(environ, lambda s, h, e=None: statuses.append(s)))
            assert answer

        return request

    serve(sealed_environ(sender))()  # the first request fills the caches of routes and keys
    run = functions_run(serve(sealed_environ(sender)))
    assert statuses == ["200 OK", "200 OK"]
    # The path is the one measured: the envelope opened and sealed it.
    assert any(name.endswith(":open_request") for name in run)
    assert any(name.endswith(":seal_response") for name in run)
    assert len(run) <= SERVER_BUDGET, sorted(run)


@pytest.fixture
def live_billing(tmp_path: Path) -> Iterator[FileRegistry]:
    registry = FileRegistry(tmp_path / "registry.json")
    app = EncryptionMiddleware(echo, "billing", keyring=keyring(), replay_store=MemoryReplayStore(),
                               allowed_callers=["orders"])  # fmt: skip
    server = LiveServer(app).start()
    registry.register("billing", server.url)
    yield registry
    server.stop()
    registry.close()


def test_a_client_call_runs_within_the_clients_budget(live_billing: FileRegistry) -> None:
    """One warm MicroServiceClient.request runs at most CLIENT_BUDGET of our functions."""
    client = MicroServiceClient("orders", registry=live_billing, keyring=keyring())
    answers: list[Any] = []

    def call() -> None:
        answers.append(
            client.request(
                target_service="billing", endpoint="/api/v1/charge", method="POST", payload={"n": 1}
            )
        )

    with client:
        call()
        run = functions_run(call)
    assert answers[-1].json() == {"n": 1}
    assert any(name.endswith(":open_response") for name in run)
    assert len(run) <= CLIENT_BUDGET, sorted(run)

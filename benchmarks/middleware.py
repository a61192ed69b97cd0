"""EncryptionMiddleware's own cost per sealed 1 KiB request and response, in-process.

The baseline is a bare WSGI call of the same app with the plaintext request:
copy an environ, call the app, join its body. Ours is the same call through
the middleware with the sealed request: read and verify the body, open it,
record the id in the replay store, run the app, seal its 1 KiB answer. The
difference is what the middleware adds. Requests are sealed before timing (that
is the client's cost), one per call, so the replay store sees fresh ids.

The replay store is measured on its own too: one ``add()`` of a fresh id in
the shared-memory table on tmpfs (``/dev/shm``, the default store), in memory,
in SQLite on tmpfs and on disk (both with the default ``synchronous=OFF``),
and in the shared-memory table on disk.
"""

from __future__ import annotations

import io
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

from mscomm_sync import Envelope, Keyring, generate_key
from mscomm_sync.envelope import target_from_url
from mscomm_sync.replay import MemoryReplayStore, ReplayStore
from mscomm_sync.replay.shm import ShmReplayStore
from mscomm_sync.replay.sqlite import SqliteReplayStore
from mscomm_sync.wsgi import EncryptionMiddleware

from .timing import interleaved

SIZE = 1024
NUMBER = 2000
ROUNDS = 5
TARGET_US = 60.0
URL = "http://127.0.0.1:8000/api/v1/charge?order=42"


def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """Read the body and answer 1 KiB of JSON-ish bytes."""
    environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    start_response("200 OK", [("Content-Type", "application/json")])
    return [ANSWER]


ANSWER = b"x" * SIZE


def _start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
    return None


def _template() -> dict[str, Any]:
    return {
        "REQUEST_METHOD": "POST",
        "SCRIPT_NAME": "",
        "PATH_INFO": "/api/v1/charge",
        "QUERY_STRING": "order=42",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": "127.0.0.1:8000",
        "wsgi.url_scheme": "http",
        "wsgi.errors": io.StringIO(),
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }


def _sealed_environs(ring: Keyring, count: int) -> Iterator[dict[str, Any]]:
    sender = Envelope("orders", keyring=ring)
    target = target_from_url(URL)
    body = os.urandom(SIZE)
    prepared = []
    for _ in range(count):
        sealed = sender.seal_request(
            recipient="billing", method="POST", target=target, body=body, content_type="text/plain"
        )
        headers = {
            "HTTP_" + k.upper().replace("-", "_"): v
            for k, v in sealed.headers.items()
            if k != "Content-Type"
        }
        prepared.append((headers, sealed.body))
    template = _template()
    for headers, data in prepared:
        environ = dict(template)
        environ.update(headers)
        environ.update(
            CONTENT_TYPE="application/vnd.mscomm.sealed",
            CONTENT_LENGTH=str(len(data)),
        )
        environ["wsgi.input"] = io.BytesIO(data)
        yield environ


def _plain_environs() -> Iterator[dict[str, Any]]:
    template = _template()
    body = os.urandom(SIZE)
    while True:
        environ = dict(template)
        environ.update(CONTENT_TYPE="text/plain", CONTENT_LENGTH=str(SIZE))
        environ["wsgi.input"] = io.BytesIO(body)
        yield environ


def _caller(wsgi: Any, environs: Iterator[dict[str, Any]]) -> Callable[[], object]:
    def call() -> bytes:
        return b"".join(wsgi(next(environs), _start_response))

    return call


def _stores(workdir: Path) -> list[tuple[str, Callable[[], ReplayStore]]]:
    return [
        ("shm tmpfs", lambda: ShmReplayStore(_tmpfs_dir(workdir) / "replay.table")),
        ("memory", MemoryReplayStore),
        ("sqlite tmpfs", lambda: SqliteReplayStore(_tmpfs_dir(workdir) / "replay.sqlite3")),
        ("sqlite disk", lambda: SqliteReplayStore(workdir / "replay.sqlite3")),
        ("shm disk", lambda: ShmReplayStore(workdir / "replay.table")),
    ]


def _tmpfs_dir(workdir: Path) -> Path:
    shm = Path("/dev/shm")  # noqa: S108 - measuring tmpfs is the point
    path = (shm if shm.is_dir() else workdir) / f"mscomm-bench-{os.getpid()}"
    path.mkdir(exist_ok=True)
    return path


def main() -> None:
    ring = Keyring.from_mapping({"orders": generate_key(), "billing": generate_key()})
    calls = NUMBER * ROUNDS
    with tempfile.TemporaryDirectory(dir=os.getcwd(), prefix=".bench-") as tmp:
        workdir = Path(tmp)
        try:
            _run(ring, calls, workdir)
            refusal_timing(ring)
        finally:
            for leftover in _tmpfs_dir(workdir).glob("*"):
                leftover.unlink()
            _tmpfs_dir(workdir).rmdir()


def _envelope_only(ring: Keyring, calls: int) -> Callable[[], object]:
    """Open one sealed request and seal its answer with the envelope alone."""
    receiver = Envelope("billing", keyring=ring, replay_store=MemoryReplayStore())
    target = target_from_url(URL)
    environs = _sealed_environs(ring, calls)

    def crypto() -> object:
        environ = next(environs)
        headers = {
            k[5:].replace("_", "-").title(): v for k, v in environ.items() if k[:7] == "HTTP_X_"
        }
        opened = receiver.open_request(
            method="POST", target=target, headers=headers, body=environ["wsgi.input"].getvalue()
        )
        return receiver.seal_response(
            recipient="orders",
            method="POST",
            target=target,
            status=200,
            reply_to=opened.message_id,
            body=ANSWER,
            content_type="application/json",
        )

    return crypto


def _check_answers(wsgi: Any, environ: dict[str, Any]) -> None:
    statuses: list[str] = []

    def start_response(status: str, headers: Any, exc_info: Any = None) -> None:
        statuses.append(status)

    b"".join(wsgi(environ, start_response))
    if statuses != ["200 OK"]:
        raise SystemExit(f"the middleware answered {statuses}, not 200 OK: fix the benchmark")


def _run(ring: Keyring, calls: int, workdir: Path) -> None:
    print(f"sealed {SIZE} B request + {SIZE} B response, in-process, median of {ROUNDS} rounds")
    print("bare: the app called directly; envelope: open+seal alone (memory store);")
    print("ours: the app behind the middleware; added = ours - bare;")
    print("wsgi+store = added - envelope: the middleware's own handling and its replay store")
    columns = ("bare us", "envelope", "ours us", "added us", "wsgi+store")
    print(f"{'replay store':>13} " + " ".join(f"{c:>9}" for c in columns) + "  target")
    for name, make in _stores(workdir):
        store = make()
        # A new host-wide table vouches only from its next whole second: wait for it,
        # or every request of this second would be refused with a 503.
        time.sleep(max(0.0, getattr(store, "not_before", 0.0) - time.time()))
        wrapped = EncryptionMiddleware(
            app, "billing", keyring=ring, replay_store=store, allowed_callers=["orders"]
        )
        bare = _caller(app, _plain_environs())
        environs = _sealed_environs(ring, calls + 1)
        ours = _caller(wrapped, environs)
        crypto = _envelope_only(ring, calls + 1)
        # Seal the requests and open the store's connection outside the timing, and
        # check that the middleware answers (a refusal would be timed as a call).
        _check_answers(wrapped, next(environs))
        crypto()
        t_bare, t_crypto, t_ours = interleaved([bare, crypto, ours], number=NUMBER, rounds=ROUNDS)
        added = (t_ours - t_bare) * 1e6
        verdict = "ok" if added < TARGET_US else "MISS"
        own = added - t_crypto * 1e6
        print(
            f"{name:>13} {t_bare * 1e6:9.1f} {t_crypto * 1e6:9.1f} {t_ours * 1e6:9.1f} "
            f"{added:9.1f} {own:10.1f}  <{TARGET_US:g} us: {verdict}"
        )
    print("\nreplay store alone: one add() of a fresh id")
    print(f"{'replay store':>13} {'us/add':>8}")
    for name, make in _stores(workdir):
        store = make()
        # Random ids, as message ids are: they land all over the B-tree.
        keys = iter([f"orders/{os.urandom(16).hex()}" for _ in range(NUMBER * ROUNDS + 1)])
        store.add(next(keys), 4e9)

        def add(store: ReplayStore = store, keys: Iterator[str] = keys) -> bool:
            return store.add(next(keys), 4e9)

        (t_add,) = interleaved([add], number=NUMBER, rounds=ROUNDS)
        print(f"{name:>13} {t_add * 1e6:8.1f}")


#: The body size docs/middleware.md's "What a refusal reveals" quotes.
REFUSED_SIZE = 8 * 1024 * 1024


def refusal_timing(ring: Keyring) -> None:
    """How long the envelope takes to refuse an 8 MiB request, by reason.

    The checks of what travels in clear (the key id, the timestamp) refuse
    before any cryptographic work; a bad tag is found only by decrypting.
    """
    import logging

    from mscomm_sync.errors import IntegrityError

    logging.getLogger("mscomm_sync.envelope").setLevel(logging.WARNING)  # quiet refusals
    now = 1_700_000_000.0
    sender = Envelope("orders", keyring=ring, clock=lambda: now)
    stranger = Keyring.from_mapping({"orders": generate_key(), "billing": generate_key()})
    target = target_from_url("http://127.0.0.1:8000/api/v1/charge")
    body = os.urandom(REFUSED_SIZE)
    good = sender.seal_request(recipient="billing", method="POST", target=target, body=body)
    unknown = Envelope("orders", keyring=stranger, clock=lambda: now).seal_request(
        recipient="billing", method="POST", target=target, body=body
    )
    tampered = bytearray(good.body)
    tampered[-1] ^= 1
    cases: dict[str, tuple[Any, bytes, float]] = {
        "unknown key id": (unknown.headers, unknown.body, now),
        "stale timestamp": (good.headers, good.body, now + 3600),
        "bad tag": (good.headers, bytes(tampered), now),
    }

    def refusing(headers: Any, data: bytes, at: float) -> Callable[[], object]:
        receiver = Envelope("billing", keyring=ring, clock=lambda: at)

        def refuse() -> None:
            try:
                receiver.open_request(method="POST", target=target, headers=headers, body=data)
            except IntegrityError:
                return
            raise AssertionError("opened")

        return refuse

    funcs = [refusing(headers, data, at) for headers, data, at in cases.values()]
    times = interleaved(funcs, number=20, rounds=ROUNDS)
    print(f"\nrefusing a sealed {REFUSED_SIZE >> 20} MiB request, by reason (envelope only):")
    for name, seconds in zip(cases, times):
        print(f"{name:>16} {seconds * 1e3:8.3f} ms")

"""A malicious server cannot make the client read (or hold) more than its answer limit.

Each attack is served from this process on 127.0.0.1; the real client runs in
a fresh subprocess, which reports the error it raised and how much its peak
resident memory grew during the call. Every attack offers 256 MiB or more,
against a limit of 8 MiB.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import textwrap
import threading
import zlib
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any, Callable

import attrs
import pytest

from mscomm_sync import CallPolicy, ResponseTooLargeError

from .servers import Recorder, json_app, sealed

MIB = 1024 * 1024
LIMIT = 8 * MIB
OFFERED = 256 * MIB
#: Peak memory the client may add during one refused call: the limit, the
#: buffers around it, and the noise of a Python process.
ALLOWED_GROWTH = 40 * MIB

ROOT = Path(__file__).resolve().parents[2]


@cache
def gzip_bomb() -> bytes:
    """``OFFERED`` zero bytes, gzip-compressed (about 256 KiB)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    zeros = bytes(MIB)
    return b"".join([*(packer.compress(zeros) for _ in range(OFFERED // MIB)), packer.flush()])


def zeros(sock: socket.socket, total: int) -> None:
    """Send ``total`` zero bytes, stopping when the client hangs up."""
    chunk = bytes(256 * 1024)
    for _ in range(total // len(chunk)):
        sock.sendall(chunk)


def endless_chunks(sock: socket.socket, total: int) -> None:
    """Send chunked zeros up to ``total`` bytes (a server that never ends its answer)."""
    chunk = bytes(256 * 1024)
    frame = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
    for _ in range(total // len(chunk)):
        sock.sendall(frame)


ATTACKS: dict[str, tuple[bytes, Callable[[socket.socket], None]]] = {
    "unsealed-declared": (
        b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % OFFERED,
        lambda s: zeros(s, OFFERED),
    ),
    "unsealed-refusal-declared": (
        b"HTTP/1.1 401 Unauthorized\r\nContent-Length: %d\r\n\r\n" % OFFERED,
        lambda s: zeros(s, OFFERED),
    ),
    "sealed-declared": (
        b"HTTP/1.1 200 OK\r\nX-Encrypted-Payload: true\r\nContent-Length: %d\r\n\r\n" % OFFERED,
        lambda s: zeros(s, OFFERED),
    ),
    "sealed-endless-chunked": (
        b"HTTP/1.1 200 OK\r\nX-Encrypted-Payload: true\r\nTransfer-Encoding: chunked\r\n\r\n",
        lambda s: endless_chunks(s, OFFERED),
    ),
    "sealed-gzip-bomb": (
        b"HTTP/1.1 200 OK\r\nX-Encrypted-Payload: true\r\nContent-Encoding: gzip\r\n"
        b"Content-Length: %d\r\n\r\n" % len(gzip_bomb()),
        lambda s: s.sendall(gzip_bomb()),
    ),
    "plaintext-allowed-declared": (
        b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % OFFERED,
        lambda s: zeros(s, OFFERED),
    ),
    "plaintext-allowed-endless-chunked": (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        lambda s: endless_chunks(s, OFFERED),
    ),
    "plaintext-allowed-gzip-bomb": (
        b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n"
        % len(gzip_bomb()),
        lambda s: s.sendall(gzip_bomb()),
    ),
}
EXPECTED = {
    "unsealed-declared": "InsecureResponseError",
    "unsealed-refusal-declared": "RequestRejectedError",
    "sealed-declared": "ResponseTooLargeError",
    "sealed-endless-chunked": "ResponseTooLargeError",
    "sealed-gzip-bomb": "UnverifiedAnswerError",
    "plaintext-allowed-declared": "ResponseTooLargeError",
    "plaintext-allowed-endless-chunked": "ResponseTooLargeError",
    "plaintext-allowed-gzip-bomb": "ResponseTooLargeError",
}


class AttackServer:
    """Answers every request on 127.0.0.1 with one attack, then closes the connection."""

    def __init__(self, attack: str) -> None:
        self.head, self.body = ATTACKS[attack]
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._sock.getsockname()[1]}"

    def __enter__(self) -> AttackServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)
        self._sock.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except (socket.timeout, OSError):
                continue
            with conn:
                conn.settimeout(30)
                try:
                    _read_request(conn)
                    conn.sendall(self.head)
                    self.body(conn)
                except OSError:
                    pass  # the client hung up, as it should


def _read_request(conn: socket.socket) -> None:
    data = b""
    while b"\r\n\r\n" not in data and len(data) < 1 << 20:
        piece = conn.recv(65536)
        if not piece:
            return
        data += piece
    head, _, rest = data.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            missing = int(value) - len(rest)
            while missing > 0:
                piece = conn.recv(min(missing, 65536))
                if not piece:
                    return
                missing -= len(piece)


CLIENT = textwrap.dedent(
    """
    import json, resource, sys
    import attrs
    from mscomm_sync import CallPolicy, FileRegistry, MicroServiceClient, MscommError
    from mscomm_sync.keyring import Keyring, generate_key

    url, registry_path, limit, plaintext = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    registry = FileRegistry(registry_path)
    registry.register("billing", url)
    policy = attrs.evolve(CallPolicy(), max_answer_size=limit,
                          allow_plaintext_replies=plaintext == "yes")
    keys = Keyring.from_mapping({"orders": generate_key(), "billing": generate_key()})
    client = MicroServiceClient("orders", registry=registry, keyring=keys, policy=policy)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
        client.request(target_service="billing", endpoint="/x", method="POST", timeout=60)
        error = None
    except MscommError as exc:
        error = type(exc).__name__
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"error": error, "growth": (after - before) * 1024}))
    """
)


@pytest.fixture
def attacked(tmp_path: Path) -> Iterator[Callable[[str], dict[str, Any]]]:
    """Run the real client, in a subprocess, against one attack."""

    def run(attack: str) -> dict[str, Any]:
        plaintext = "yes" if attack.startswith("plaintext-allowed") else "no"
        with AttackServer(attack) as server:
            result = subprocess.run(
                [sys.executable, "-c", CLIENT, server.url, str(tmp_path / "reg.json"),
                 str(LIMIT), plaintext],
                capture_output=True, text=True, timeout=120, cwd=ROOT, check=True,
            )  # fmt: skip
        report: dict[str, Any] = json.loads(result.stdout.splitlines()[-1])
        return report

    yield run


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_attack_is_refused_without_reading_it_whole(
    attacked: Callable[[str], dict[str, Any]], attack: str
) -> None:
    """Each oversized, endless or compressed answer fails with its own error, and the
    client's peak memory grows by far less than what was offered."""
    report = attacked(attack)
    assert report["error"] == EXPECTED[attack]
    assert report["growth"] < ALLOWED_GROWTH, report


def test_a_real_service_answer_over_the_limit_is_refused(
    serve: Callable[..., Any], make_client: Callable[..., Any]
) -> None:
    """A sealed answer from a real service larger than max_answer_size raises
    ResponseTooLargeError naming the limit and the declared size."""
    big = (200, [("Content-Type", "application/octet-stream")], b"x" * 5000)
    serve(sealed(json_app(Recorder(), {"/big": lambda environ: big})))
    policy = attrs.evolve(CallPolicy(), max_answer_size=4096)
    client = make_client(policy=policy)
    with pytest.raises(ResponseTooLargeError) as info:
        client.request(target_service="billing", endpoint="/big")
    assert (info.value.service, info.value.limit, info.value.declared) == ("billing", 4096, 5016)
    # Within the limit the same answer is read.
    client.policies["billing"] = attrs.evolve(CallPolicy(), max_answer_size=5000)
    assert client.request(target_service="billing", endpoint="/big").content == big[2]

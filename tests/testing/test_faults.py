"""Tests for mscomm_sync.testing.faults: injected transport failures look like real ones.

Each fault is compared with the failure requests raises for real against 127.0.0.1 (a
closed port, a server that never answers, one that resets the connection), except the
connect timeout, which loopback cannot produce on demand: that one is checked against
the shape urllib3 documents.
"""

from __future__ import annotations

import re
import socket
import struct
import threading
from collections.abc import Iterator

import pytest
import requests
from urllib3.exceptions import (
    ConnectTimeoutError,
    MaxRetryError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
)

from mscomm_sync.client.failures import AttemptFailed
from mscomm_sync.testing.faults import CONNECT_PHASE, FAULTS, transport_error

WAIT_SECONDS = 30.0


def prepared(url: str = "http://127.0.0.1:8001/invoices?x=1") -> requests.PreparedRequest:
    return requests.Request("POST", url, data=b"{}").prepare()


def free_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def real_failure(url: str, timeout: float = 5.0) -> requests.RequestException:
    """Return what requests raises for a POST to ``url``."""
    with requests.Session() as session:
        try:
            session.send(prepared(url), timeout=timeout)
        except requests.RequestException as exc:
            return exc
    raise AssertionError(f"{url} answered")


def read_whole_request(conn: socket.socket) -> None:
    """Read one request, headers and Content-Length body, so a reset comes after it all."""
    data = b""
    for _ in range(1000):
        head, sep, body = data.partition(b"\r\n\r\n")
        if sep:
            length = 0
            for line in head.split(b"\r\n"):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if len(body) >= length:
                return
        chunk = conn.recv(65536)
        if not chunk:
            return
        data += chunk


@pytest.fixture
def silent_url() -> Iterator[str]:
    """A loopback server whose kernel accepts connections that nobody ever answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/invoices"


@pytest.fixture
def resetting_url() -> Iterator[str]:
    """A loopback server that reads a request, then resets the connection instead of answering."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(WAIT_SECONDS)

    def serve_one() -> None:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        conn.settimeout(WAIT_SECONDS)
        read_whole_request(conn)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()  # with a zero linger, close() sends RST

    thread = threading.Thread(target=serve_one, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/invoices"
    finally:
        listener.close()
        thread.join(WAIT_SECONDS)


# -- the kinds -------------------------------------------------------------------------


def test_the_fault_kinds_are_the_documented_four() -> None:
    """refused, connect_timeout, read_timeout and reset; the first two are connect-phase."""
    assert frozenset({"refused", "connect_timeout", "read_timeout", "reset"}) == FAULTS
    assert frozenset({"refused", "connect_timeout"}) == CONNECT_PHASE


@pytest.mark.parametrize("kind", ["", "timeout", "REFUSED", "dns"])
def test_an_unknown_kind_is_refused_listing_the_known_ones(kind: str) -> None:
    """Any other kind raises ValueError naming it and every valid kind."""
    with pytest.raises(ValueError, match="unknown fault") as raised:
        transport_error(kind, prepared())
    assert all(known in str(raised.value) for known in FAULTS)


@pytest.mark.parametrize("kind", sorted(FAULTS))
def test_every_fault_carries_its_request(kind: str) -> None:
    """The exception is tied to the request that failed, as requests ties its own."""
    request = prepared()
    assert transport_error(kind, request).request is request


# -- the shape of each -----------------------------------------------------------------


def test_refused_is_a_connection_error_around_a_new_connection_error() -> None:
    """refused: requests.ConnectionError(MaxRetryError(NewConnectionError)), not a timeout."""
    error = transport_error("refused", prepared())
    assert type(error) is requests.ConnectionError
    retry = error.args[0]
    assert isinstance(retry, MaxRetryError) and isinstance(retry.reason, NewConnectionError)
    assert "Connection refused" in str(retry.reason)


def test_connect_timeout_is_a_connect_timeout_around_a_connect_timeout_error() -> None:
    """connect_timeout: requests.ConnectTimeout(MaxRetryError(ConnectTimeoutError))."""
    error = transport_error("connect_timeout", prepared())
    assert type(error) is requests.ConnectTimeout
    assert isinstance(error, requests.ConnectionError) and isinstance(error, requests.Timeout)
    retry = error.args[0]
    assert isinstance(retry, MaxRetryError) and type(retry.reason) is ConnectTimeoutError


def test_read_timeout_is_a_read_timeout_around_a_read_timeout_error() -> None:
    """read_timeout: requests.ReadTimeout(ReadTimeoutError), and not a connection error."""
    error = transport_error("read_timeout", prepared())
    assert type(error) is requests.ReadTimeout
    assert not isinstance(error, requests.ConnectionError)
    assert isinstance(error.args[0], ReadTimeoutError)


def test_reset_is_a_connection_error_around_a_protocol_error() -> None:
    """reset: requests.ConnectionError(ProtocolError("Connection aborted.", reset))."""
    error = transport_error("reset", prepared())
    assert type(error) is requests.ConnectionError
    aborted = error.args[0]
    assert isinstance(aborted, ProtocolError)
    assert aborted.args[0] == "Connection aborted."
    assert isinstance(aborted.args[1], ConnectionResetError) and aborted.args[1].errno == 104


@pytest.mark.parametrize(
    ("url", "host", "port", "path"),
    [
        ("http://127.0.0.1:8001/invoices?x=1", "127.0.0.1", 8001, "/invoices"),
        ("http://billing.internal/", "billing.internal", 80, "/"),
        ("https://billing.internal", "billing.internal", 443, "/"),
    ],
    ids=["explicit-port", "http-default", "https-default"],
)
def test_the_urllib3_error_names_the_requests_host_port_and_path(
    url: str, host: str, port: int, path: str
) -> None:
    """The pool in the urllib3 error is the request's host and port, and its url the path."""
    retry = transport_error("refused", prepared(url)).args[0]
    assert (retry.pool.host, retry.pool.port, retry.url) == (host, port, path)


# -- the same as the real thing ----------------------------------------------------------


def test_refused_matches_a_real_refused_connection() -> None:
    """The refused fault has the type, urllib3 reason and message of a real refusal."""
    url = f"http://127.0.0.1:{free_port()}/invoices"
    real, fake = real_failure(url), transport_error("refused", prepared(url))
    assert type(fake) is type(real)
    assert type(fake.args[0]) is type(real.args[0])
    assert type(fake.args[0].reason) is type(real.args[0].reason)
    # Older urllib3 releases put the connection's repr, with its address, in the message.
    assert without_addresses(fake.args[0].reason) == without_addresses(real.args[0].reason)


def without_addresses(exc: BaseException) -> str:
    return re.sub(r" at 0x[0-9a-f]+", "", str(exc))


def test_refused_is_classified_like_a_real_refused_connection() -> None:
    """The client's failure classifier sees the refused fault as it sees a real refusal."""
    url = f"http://127.0.0.1:{free_port()}/invoices"
    real = AttemptFailed.from_requests(real_failure(url))
    fake = AttemptFailed.from_requests(transport_error("refused", prepared(url)))
    assert (fake.reason, fake.connect_phase, fake.refused) == (
        real.reason,
        real.connect_phase,
        real.refused,
    )


def test_read_timeout_matches_a_server_that_never_answers(silent_url: str) -> None:
    """The read_timeout fault has the type and urllib3 reason of a real read timeout, and the
    client classifies both alike (after sending, not connect-phase)."""
    real = real_failure(silent_url, timeout=0.2)
    fake = transport_error("read_timeout", prepared(silent_url))
    assert type(fake) is type(real)
    assert type(fake.args[0]) is type(real.args[0])
    real_seen, fake_seen = AttemptFailed.from_requests(real), AttemptFailed.from_requests(fake)
    assert (fake_seen.reason, fake_seen.connect_phase, fake_seen.refused) == (
        real_seen.reason,
        real_seen.connect_phase,
        real_seen.refused,
    )


def test_reset_matches_a_server_that_resets_the_connection(resetting_url: str) -> None:
    """The reset fault has the type, urllib3 error and inner error of a real reset, and the
    client classifies both alike."""
    real = real_failure(resetting_url)
    fake = transport_error("reset", prepared(resetting_url))
    assert type(fake) is type(real)
    assert type(fake.args[0]) is type(real.args[0])
    assert fake.args[0].args[0] == real.args[0].args[0]
    assert type(fake.args[0].args[1]) is type(real.args[0].args[1])
    real_seen, fake_seen = AttemptFailed.from_requests(real), AttemptFailed.from_requests(fake)
    assert (fake_seen.reason, fake_seen.connect_phase) == (
        real_seen.reason,
        real_seen.connect_phase,
    )


@pytest.mark.parametrize("kind", sorted(FAULTS))
def test_connect_phase_faults_are_the_ones_the_client_sees_as_connect_phase(kind: str) -> None:
    """The client treats exactly the CONNECT_PHASE kinds as never having left this host."""
    seen = AttemptFailed.from_requests(transport_error(kind, prepared()))
    assert seen.connect_phase is (kind in CONNECT_PHASE)

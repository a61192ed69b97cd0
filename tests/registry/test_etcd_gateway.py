"""Tests for mscomm_sync.registry.etcd_gateway: etcd's JSON gateway, with failover.

Against a real etcd on 127.0.0.1 (the ``etcd`` marker), and against small real HTTP servers
that answer the way a failing member does (503, not JSON, an error object).
"""

from __future__ import annotations

import contextlib
import http.server
import json
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from mscomm_sync.errors import ConfigurationError, RegistryError
from mscomm_sync.registry.etcd_gateway import EtcdGateway, KeyValue, prefix_range_end

from .conftest import EtcdCluster

WAIT_SECONDS = 30.0


class Member(http.server.ThreadingHTTPServer):
    """A loopback HTTP server that answers every POST with one fixed reply and counts them."""

    daemon_threads = True

    def __init__(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.status, self.body, self.content_type = status, body, content_type
        self.posts = 0
        super().__init__(("127.0.0.1", 0), _Handler)
        self.url = f"http://127.0.0.1:{self.server_address[1]}"
        self._thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def __enter__(self) -> Member:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()
        self._thread.join(WAIT_SECONDS)


class _Handler(http.server.BaseHTTPRequestHandler):
    server: Member

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.posts += 1
        self.send_response(self.server.status)
        self.send_header("Content-Type", self.server.content_type)
        self.send_header("Content-Length", str(len(self.server.body)))
        self.end_headers()
        self.wfile.write(self.server.body)

    def log_message(self, *args: object) -> None:
        pass


@contextlib.contextmanager
def member(status: int, body: object, content_type: str = "application/json") -> Iterator[Member]:
    """Run a Member answering ``status`` with ``body`` (JSON unless it is bytes)."""
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    with Member(status, raw, content_type) as server:
        yield server


def refused_url() -> str:
    """A loopback URL nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def wait_for_exit(pid: int, seconds: float = WAIT_SECONDS) -> int:
    """Return the exit status of child ``pid``; kill it and fail if it runs past ``seconds``."""
    deadline = time.monotonic() + seconds
    pause = threading.Event()
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return os.waitstatus_to_exitcode(status)
        pause.wait(0.01)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    pytest.fail(f"forked child did not exit within {seconds}s")


@pytest.fixture
def gateway(etcd_node: EtcdCluster) -> Iterator[EtcdGateway]:
    """A gateway to the shared real etcd."""
    gw = EtcdGateway(etcd_node.urls)
    yield gw
    gw.close()


# -- without a server ------------------------------------------------------------------


def test_prefix_range_end_covers_the_prefix() -> None:
    """The range end is the prefix with its last byte incremented."""
    assert prefix_range_end(b"/a/") == b"/a0"
    assert prefix_range_end(b"a\xff") == b"b"


@pytest.mark.parametrize("prefix", [b"", b"\xff", b"\xff\xff"], ids=["empty", "ff", "ffff"])
def test_a_prefix_with_no_successor_ranges_to_the_end(prefix: bytes) -> None:
    """A prefix that cannot be incremented (empty, or all 0xff) selects every key after it."""
    assert prefix_range_end(prefix) == b"\0"


def test_at_least_one_endpoint_is_needed() -> None:
    """A gateway without endpoints is a configuration error."""
    with pytest.raises(ConfigurationError) as raised:
        EtcdGateway([])
    assert raised.value.reason == "no endpoint"


def test_endpoints_lose_trailing_slashes_and_the_first_is_tried_first() -> None:
    """Endpoints are kept without a trailing slash; the first one is current to begin with."""
    gw = EtcdGateway(["http://127.0.0.1:1/", "http://127.0.0.1:2"])
    assert gw.endpoints == ["http://127.0.0.1:1", "http://127.0.0.1:2"]
    assert gw.location == "http://127.0.0.1:1,http://127.0.0.1:2"
    assert gw.current == "http://127.0.0.1:1"
    assert repr(gw) == (
        "<EtcdGateway endpoints='http://127.0.0.1:1,http://127.0.0.1:2' "
        "current='http://127.0.0.1:1'>"
    )


def test_every_member_failing_is_unreachable_naming_each() -> None:
    """When no member answers, RegistryError says "unreachable" and lists each failure."""
    with member(503, {"error": "no leader"}) as busy:
        dead = refused_url()
        gw = EtcdGateway([dead, busy.url], connect_timeout=5, timeout=5)
        with pytest.raises(RegistryError) as raised:
            gw.call("/v3/kv/range", {})
    assert raised.value.reason == "unreachable"
    assert raised.value.location == f"{dead},{busy.url}"
    assert f"{dead}: ConnectionError" in str(raised.value)
    assert f"{busy.url}: HTTP 503" in str(raised.value)


def test_an_answer_that_is_not_json_is_a_bad_answer() -> None:
    """A member answering with something other than JSON raises RegistryError "bad answer"."""
    proxy = member(200, b"<html>proxy</html>", "text/html")
    with proxy as server, pytest.raises(RegistryError) as raised:
        EtcdGateway([server.url]).call("/v3/kv/range", {})
    assert raised.value.reason == "bad answer"


def test_json_that_is_not_an_object_is_a_bad_answer() -> None:
    """A JSON list or string instead of an object raises RegistryError "bad answer"."""
    with member(200, ["not", "an", "object"]) as odd, pytest.raises(RegistryError) as raised:
        EtcdGateway([odd.url]).call("/v3/kv/range", {})
    assert raised.value.reason == "bad answer"


def test_an_error_object_is_a_refusal_with_its_message() -> None:
    """An answer carrying etcd's error object raises RegistryError with its message as reason,
    and the member is not skipped for another."""
    refusal = {"error": "etcdserver: too many operations", "message": "too many ops", "code": 3}
    with member(400, refusal) as strict, member(200, {"header": {}}) as other:
        gw = EtcdGateway([strict.url, other.url])
        with pytest.raises(RegistryError) as raised:
            gw.call("/v3/kv/txn", {})
        assert other.posts == 0
    assert raised.value.reason == "too many ops"
    assert "etcd refused /v3/kv/txn: too many ops" in str(raised.value)


def test_an_error_object_in_a_200_answer_is_a_refusal() -> None:
    """An answer with an "error" field is refused even when its status is 200."""
    odd = member(200, {"error": "lost leader", "code": 14})
    with odd as server, pytest.raises(RegistryError) as raised:
        EtcdGateway([server.url]).call("/v3/kv/range", {})
    assert raised.value.reason == "lost leader"


# -- failover --------------------------------------------------------------------------


def test_a_refused_member_is_skipped(caplog: pytest.LogCaptureFixture) -> None:
    """With the first member refusing connections, the call is answered by the next, which
    becomes current (and is logged once)."""
    with member(200, {"header": {"revision": "7"}}) as good:
        gw = EtcdGateway([refused_url(), good.url], connect_timeout=5)
        with caplog.at_level(logging.INFO, logger="mscomm_sync.registry"):
            assert gw.revision() == 7
            assert gw.revision() == 7
    assert gw.current == good.url
    assert [r.getMessage() for r in caplog.records if "now using" in r.getMessage()] == [
        f"etcd: now using {good.url}"
    ]


def test_a_member_answering_5xx_is_skipped_and_then_avoided() -> None:
    """A member without a leader (503) is passed over, and later calls start at the member
    that answered."""
    with member(503, {"error": "no leader"}) as busy, member(200, {"header": {}}) as good:
        gw = EtcdGateway([busy.url, good.url])
        for _ in range(3):
            gw.call("/v3/kv/range", {})
    assert (busy.posts, good.posts) == (1, 3)


def test_failover_wraps_around_to_earlier_members() -> None:
    """Once a later member is current and fails, the earlier members are tried next."""
    with member(503, {"header": {}}) as first, member(200, {"header": {}}) as second:
        gw = EtcdGateway([first.url, second.url])
        gw.call("/v3/kv/range", {})
        assert gw.current == second.url
        first.status, second.status = 200, 503
        gw.call("/v3/kv/range", {})
        assert gw.current == first.url
        assert (first.posts, second.posts) == (2, 2)


# -- against a real etcd ----------------------------------------------------------------


@pytest.mark.etcd
def test_a_put_key_reads_back_with_its_revision(gateway: EtcdGateway, etcd_prefix: str) -> None:
    """A value put under a key is read back whole (any bytes), with a revision and no lease."""
    value = bytes(range(256))
    gateway.put(f"{etcd_prefix}/a", value)
    [kv], revision = gateway.range_prefix(f"{etcd_prefix}/")
    assert isinstance(kv, KeyValue)
    assert (kv.key, kv.value, kv.lease) == (f"{etcd_prefix}/a", value, 0)
    assert 0 < kv.mod_revision <= revision


@pytest.mark.etcd
def test_range_prefix_returns_only_that_prefix_sorted(
    gateway: EtcdGateway, etcd_prefix: str
) -> None:
    """Keys under the prefix come back sorted; a key that merely starts alike does not."""
    for name in ("c", "a", "b"):
        gateway.put(f"{etcd_prefix}/svc/{name}", name.encode())
    gateway.put(f"{etcd_prefix}/svc-other/x", b"x")
    kvs, _ = gateway.range_prefix(f"{etcd_prefix}/svc/")
    assert [kv.key for kv in kvs] == [f"{etcd_prefix}/svc/{n}" for n in ("a", "b", "c")]


@pytest.mark.etcd
def test_an_empty_prefix_reads_as_no_keys(gateway: EtcdGateway, etcd_prefix: str) -> None:
    """A prefix nobody wrote gives no keys and the store's revision."""
    kvs, revision = gateway.range_prefix(f"{etcd_prefix}/nothing/")
    assert kvs == []
    assert revision == gateway.revision()


@pytest.mark.etcd
def test_the_revision_moves_on_every_change(gateway: EtcdGateway, etcd_prefix: str) -> None:
    """revision() grows by one with each put and each delete."""
    before = gateway.revision()
    gateway.put(f"{etcd_prefix}/k", b"1")
    gateway.delete(f"{etcd_prefix}/k")
    assert gateway.revision() == before + 2


@pytest.mark.etcd
def test_delete_removes_a_key_and_an_absent_key_is_fine(
    gateway: EtcdGateway, etcd_prefix: str
) -> None:
    """delete() removes the key; deleting it again raises nothing."""
    gateway.put(f"{etcd_prefix}/k", b"1")
    gateway.delete(f"{etcd_prefix}/k")
    gateway.delete(f"{etcd_prefix}/k")
    assert gateway.range_prefix(f"{etcd_prefix}/")[0] == []


@pytest.mark.etcd
def test_a_key_put_under_a_lease_carries_it(gateway: EtcdGateway, etcd_prefix: str) -> None:
    """grant() gives a lease id; a key put under it reports that lease."""
    lease = gateway.grant(60)
    try:
        assert lease > 0
        gateway.put(f"{etcd_prefix}/leased", b"v", lease=lease)
        [kv], _ = gateway.range_prefix(f"{etcd_prefix}/")
        assert kv.lease == lease
    finally:
        gateway.revoke(lease)


@pytest.mark.etcd
def test_keepalive_renews_a_live_lease_and_reports_a_lost_one(gateway: EtcdGateway) -> None:
    """keepalive() returns the lease's TTL while it lives and 0 once it is gone."""
    lease = gateway.grant(60)
    assert gateway.keepalive(lease) == 60
    gateway.revoke(lease)
    assert gateway.keepalive(lease) == 0


@pytest.mark.etcd
def test_revoking_a_lease_deletes_its_keys(gateway: EtcdGateway, etcd_prefix: str) -> None:
    """Keys attached to a revoked lease disappear at once."""
    lease = gateway.grant(60)
    gateway.put(f"{etcd_prefix}/leased", b"v", lease=lease)
    gateway.revoke(lease)
    assert gateway.range_prefix(f"{etcd_prefix}/")[0] == []


@pytest.mark.etcd
def test_revoking_an_unknown_lease_is_fine(gateway: EtcdGateway) -> None:
    """A lease that expired or never existed can be revoked without error."""
    lease = gateway.grant(60)
    gateway.revoke(lease)
    gateway.revoke(lease)


@pytest.mark.etcd
def test_putting_under_an_unknown_lease_is_refused_as_not_found(
    gateway: EtcdGateway, etcd_prefix: str
) -> None:
    """etcd's NOT_FOUND answer becomes RegistryError with reason "not found"."""
    lease = gateway.grant(60)
    gateway.revoke(lease)
    with pytest.raises(RegistryError) as raised:
        gateway.put(f"{etcd_prefix}/k", b"v", lease=lease)
    assert raised.value.reason == "not found"
    assert raised.value.location == gateway.location


@pytest.mark.etcd
def test_an_unknown_path_is_a_bad_answer(gateway: EtcdGateway) -> None:
    """etcd's plain-text 404 for a path it does not serve is a "bad answer", not a crash."""
    with pytest.raises(RegistryError) as raised:
        gateway.call("/v3/no/such/call", {})
    assert raised.value.reason == "bad answer"


@pytest.mark.etcd
def test_close_then_call_opens_a_new_session(gateway: EtcdGateway, etcd_prefix: str) -> None:
    """After close() the gateway still works: the next call makes a new session."""
    gateway.put(f"{etcd_prefix}/k", b"1")
    gateway.close()
    gateway.put(f"{etcd_prefix}/k", b"2")
    assert gateway.range_prefix(f"{etcd_prefix}/")[0][0].value == b"2"


@pytest.mark.etcd
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_uses_its_own_session(gateway: EtcdGateway, etcd_prefix: str) -> None:
    """A child gets a new session instead of the parent's pooled sockets, and closing in the
    child leaves the parent's session open."""
    gateway.put(f"{etcd_prefix}/parent", b"1")  # the parent's session now holds a socket
    parent_session = gateway._session
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        status = 99
        try:
            gateway.put(f"{etcd_prefix}/child", b"1")
            fresh = gateway._session is not parent_session
            gateway.close()
            status = 0 if fresh else 1
        finally:
            os._exit(status)
    assert wait_for_exit(pid) == 0
    assert gateway._session is parent_session
    kvs, _ = gateway.range_prefix(f"{etcd_prefix}/")
    assert [kv.key for kv in kvs] == [f"{etcd_prefix}/child", f"{etcd_prefix}/parent"]


@pytest.mark.etcd
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_close_in_a_forked_child_leaves_the_inherited_pool_alone(
    gateway: EtcdGateway, etcd_prefix: str
) -> None:
    """close() in a child that has not used the gateway yet does not close the parent's session
    (whose pooled sockets it shares)."""
    gateway.put(f"{etcd_prefix}/parent", b"1")
    inherited = gateway._session
    assert inherited is not None
    pool_manager = inherited.get_adapter(gateway.current).poolmanager  # type: ignore[attr-defined]
    assert len(pool_manager.pools) == 1
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        status = 99
        try:
            gateway.close()
            status = 0 if len(pool_manager.pools) == 1 else 1
        finally:
            os._exit(status)
    assert wait_for_exit(pid) == 0

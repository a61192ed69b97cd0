"""The bound path and query agree between a client URL and a real WSGI server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from support.sealing import keyring, open_reply, send
from werkzeug.middleware.dispatcher import DispatcherMiddleware

from mscomm_sync.envelope import target_from_environ
from mscomm_sync.replay import MemoryReplayStore
from mscomm_sync.testing import LiveServer
from mscomm_sync.wsgi import EncryptionMiddleware

PATHS = [
    "/a b/c d",
    "/caf%C3%A9/na%C3%AFve",
    "/café/über/日本",
    "/100%25/pct",
    "/x%2Fy",
    "/semi;colon/plus+sign/tilde~/at@/colon:",
    "/q?b=1&a=%20two&a=3&empty=",
    "/q?x=1%26y%3D2",
    "/trailing/",
]


def where(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """Answer with the SCRIPT_NAME, PATH_INFO and QUERY_STRING the app saw."""
    seen = [environ.get("SCRIPT_NAME", ""), environ["PATH_INFO"], environ.get("QUERY_STRING", "")]
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(seen).encode()]


def protect(app: Any, script_name: str = "") -> EncryptionMiddleware:
    return EncryptionMiddleware(
        app,
        "billing",
        keyring=keyring(),
        replay_store=MemoryReplayStore(),
        script_name=script_name,
    )


@pytest.fixture(scope="module")
def root() -> Iterator[LiveServer]:
    with LiveServer(protect(where)) as live:
        yield live


@pytest.fixture(scope="module")
def mounted() -> Iterator[LiveServer]:
    """The middleware wraps only an app mounted under /api/v1 (it sees SCRIPT_NAME)."""
    outer = DispatcherMiddleware(where, {"/api/v1": protect(where, "/api/v1")})
    with LiveServer(outer) as live:
        yield live


@pytest.fixture(scope="module")
def outside() -> Iterator[LiveServer]:
    """The middleware wraps the dispatcher, in front of a mounted app."""
    with LiveServer(protect(DispatcherMiddleware(where, {"/api/v1": where}))) as live:
        yield live


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with requests.Session() as s:
        yield s


@pytest.mark.parametrize("path", PATHS)
def test_path_verifies_at_root(root: LiveServer, session: requests.Session, path: str) -> None:
    """A request to an awkward path verifies, and its answer verifies at the client."""
    call = send(session, root.url + path, method="GET", content_type=None)
    assert call.response.status_code == 200, path
    open_reply(call)


@pytest.mark.parametrize("path", PATHS)
def test_path_verifies_under_mounted_prefix(
    mounted: LiveServer, session: requests.Session, path: str
) -> None:
    """An app mounted under its configured prefix binds the endpoint below the mount point,
    which is what the app sees as PATH_INFO."""
    url = mounted.url + "/api/v1" + path
    call = send(session, url, method="GET", content_type=None, mount="/api/v1")
    assert call.response.status_code == 200, path
    script_name, path_info, _ = json.loads(open_reply(call).body)
    assert script_name == "/api/v1"
    assert target_from_environ({"PATH_INFO": path_info}) == call.target.split("?")[0]


def test_mounted_app_refuses_a_seal_over_the_full_path(
    mounted: LiveServer, session: requests.Session
) -> None:
    """A seal that binds the mount point too (the instance URL's path) does not verify."""
    call = send(session, mounted.url + "/api/v1/x", method="GET", content_type=None)
    assert call.response.status_code == 401


def test_another_mount_point_is_refused_before_anything_else(
    session: requests.Session,
) -> None:
    """An app mounted where its middleware was not told it is gets 400, even for /health."""
    outer = DispatcherMiddleware(where, {"/other": protect(where, "/api/v1")})
    with LiveServer(outer) as live:
        call = send(session, live.url + "/other/x", method="GET", content_type=None, mount="/other")
        assert call.response.status_code == 400
        assert session.get(live.url + "/other/health", timeout=30).status_code == 400


@pytest.mark.parametrize("path", PATHS[:3])
def test_path_verifies_with_middleware_outside_dispatcher(
    outside: LiveServer, session: requests.Session, path: str
) -> None:
    """The middleware in front of a dispatcher (mounted at the root) binds the full path."""
    call = send(session, outside.url + "/api/v1" + path, method="GET", content_type=None)
    assert call.response.status_code == 200, path
    open_reply(call)


def test_request_sealed_for_other_path_is_refused(
    root: LiveServer, session: requests.Session
) -> None:
    """A request sealed for one path and sent to another gets 401."""
    from support.sealing import prepare

    prepared, _, _ = prepare(root.url + "/a", method="GET", content_type=None)
    prepared.url = root.url + "/b"
    assert session.send(prepared, timeout=30).status_code == 401


def test_request_sealed_for_other_query_is_refused(
    root: LiveServer, session: requests.Session
) -> None:
    """A request whose query was changed after sealing gets 401."""
    from support.sealing import prepare

    prepared, _, _ = prepare(root.url + "/q?amount=1", method="GET", content_type=None)
    prepared.url = root.url + "/q?amount=100"
    assert session.send(prepared, timeout=30).status_code == 401

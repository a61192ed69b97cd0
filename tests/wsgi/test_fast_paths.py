"""The middleware's shortcuts give the same answers as the long way, and copy no body."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st
from support.sealing import keyring, open_reply, send

from mscomm_sync.envelope import target_from_environ
from mscomm_sync.replay import MemoryReplayStore
from mscomm_sync.wsgi import EncryptionMiddleware
from mscomm_sync.wsgi import middleware as middleware_module
from mscomm_sync.wsgi import response as response_module
from mscomm_sync.wsgi.body import BodyRefused, read_request_body
from mscomm_sync.wsgi.response import (
    AppResponseError,
    collect,
    refusal,
    status_code,
)

LARGE = 1024 * 1024 + 7


def echo(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """Answer with the request body."""
    body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    return [body]


def protect(app: Any = echo) -> EncryptionMiddleware:
    return EncryptionMiddleware(app, "billing", keyring=keyring(), replay_store=MemoryReplayStore())


# -- the canonical target ------------------------------------------------

path_text = st.one_of(
    st.text(max_size=30),
    st.text(alphabet="/%?#;=+ ~aé日\x00\x7f", max_size=12),
    st.sampled_from(["", "/", "/charge", "//x", "/a b", "/caf\u00e9", "/100%25"]),
)
environ_value = st.one_of(path_text, st.none(), st.just(b"/bytes"), st.just(7))


@settings(max_examples=300, deadline=None, database=None)
@given(script=environ_value, path=environ_value, query=environ_value)
def test_cached_target_is_the_canonical_target(script: Any, path: Any, query: Any) -> None:
    """The remembered canonical path, with the query appended, is target_from_environ's."""
    middleware = protect()
    environ = {"SCRIPT_NAME": script, "PATH_INFO": path, "QUERY_STRING": query}
    expected = target_from_environ(environ)
    assert middleware._target(environ) == expected
    assert middleware._target(environ) == expected  # from the cache this time


def test_target_cache_is_bounded() -> None:
    """The path cache never outgrows its bound, keeps answering right when full,
    and never holds a path longer than 512 characters."""
    cache = middleware_module._canonical_path
    middleware = protect()
    for i in range(600):
        environ = {"SCRIPT_NAME": "", "PATH_INFO": f"/p {i}", "QUERY_STRING": f"i={i}"}
        assert middleware._target(environ) == target_from_environ(environ)
    assert cache.cache_info().currsize == cache.cache_info().maxsize == 256
    cache.cache_clear()
    long_path = {"PATH_INFO": "/" + "x" * 512}
    assert middleware._target(long_path) == target_from_environ(long_path)
    assert cache.cache_info().currsize == 0


# -- the request body ----------------------------------------------------


@pytest.mark.parametrize("declared", ["3", " 3", "3 ", "03"])
def test_declared_length_is_read_once(declared: str) -> None:
    """A plain decimal Content-Length, padded or not, reads exactly that many bytes."""
    environ = {"CONTENT_LENGTH": declared, "wsgi.input": io.BytesIO(b"abcdef")}
    assert read_request_body(environ, 10) == b"abc"


@pytest.mark.parametrize(
    ("declared", "status"), [("11", 413), ("\u0663", 400), ("1" * 20, 400), ("-1", 400)]
)
def test_declared_length_refusals(declared: str, status: int) -> None:
    """Above the limit is 413; anything but plain ASCII digits is 400; nothing is read."""
    environ = {"CONTENT_LENGTH": declared, "wsgi.input": io.BytesIO(b"x" * 64)}
    with pytest.raises(BodyRefused) as refused:
        read_request_body(environ, 10)
    assert refused.value.status == status
    assert environ["wsgi.input"].tell() == 0


def test_body_read_in_one_piece_is_not_copied() -> None:
    """A body the stream hands over whole is returned as it is."""
    data = b"y" * LARGE
    environ = {"CONTENT_LENGTH": str(LARGE), "wsgi.input": io.BytesIO(data)}
    assert read_request_body(environ, LARGE) is data


# -- the app's response --------------------------------------------------


def test_one_chunk_answer_is_not_copied() -> None:
    """collect() hands back an answer of one chunk as that chunk."""
    chunk = b"z" * LARGE

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [])
        return [chunk]

    assert collect(app, {})[3] is chunk


@pytest.mark.parametrize("line", ["200 OK", "404 Not Found", "599", "100 Continue"])
def test_status_code_is_stable(line: str) -> None:
    """A status line gives the same code when parsed and when remembered."""
    assert status_code(line) == status_code(line) == int(line[:3])


@pytest.mark.parametrize(
    "line", ["OK", "20 OK", "200OK", "600 Nope", "099 x", "\u0662\u0660\u0660 OK"]
)
def test_bad_status_lines_stay_bad(line: str) -> None:
    """Malformed lines are refused every time, never remembered."""
    status_code("200 OK")
    before = response_module._known_status.cache_info().currsize
    for _ in range(2):
        with pytest.raises(AppResponseError):
            status_code(line)
    assert response_module._known_status.cache_info().currsize == before


def test_bytes_status_line_is_refused() -> None:
    """A status line that is not a str is refused, not looked up."""
    with pytest.raises(AppResponseError):
        status_code(b"200 OK")  # type: ignore[arg-type]


def test_remembered_status_lines_are_bounded() -> None:
    """An app inventing status lines cannot grow the remembered set past its bound."""
    cache = response_module._known_status
    for i in range(cache.cache_info().maxsize * 2):
        assert status_code(f"200 Fine {i}") == 200
    assert cache.cache_info().currsize == cache.cache_info().maxsize == 128


def test_refusals_are_fresh_lists() -> None:
    """A server that edits one refusal's headers or body list does not change the next."""
    line, headers, body = refusal(401)
    headers.append(("Date", "today"))
    body.append(b"more")
    assert refusal(401) == (
        line,
        [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(b'{"error": "unauthorized"}'))),
            ("Cache-Control", "no-store"),
        ],
        [b'{"error": "unauthorized"}'],
    )
    assert json.loads(refusal(413)[2][0]) == {"error": "payload too large"}


# -- handing the sealed body to the server -------------------------------


@pytest.fixture(scope="module")
def waitress_url() -> Iterator[str]:
    from client.servers import WaitressServer

    def outer(environ: dict[str, Any], start_response: Any) -> Any:
        # A middleware outside ours that iterates the answer itself.
        if environ["PATH_INFO"] == "/wrapped":
            return iter(list(inner(environ, start_response)))
        return inner(environ, start_response)

    inner = protect()
    with WaitressServer(outer, threads=2) as server:
        yield server.url


@pytest.mark.parametrize("size", [0, 100, 64 * 1024, LARGE])
@pytest.mark.parametrize("path", ["/echo", "/wrapped"])
def test_sealed_answers_of_every_size_verify_under_waitress(
    waitress_url: str, size: int, path: str
) -> None:
    """Under waitress, small and large sealed answers arrive whole and verify."""
    body = bytes(range(256)) * (size // 256) + b"t" * (size % 256)
    with requests.Session() as session:
        call = send(session, waitress_url + path, body=body, content_type="application/x-test")
        assert call.response.status_code == 200
        assert call.response.headers["Content-Length"] == str(size + 16)
        opened = open_reply(call)
    assert opened.body == body
    assert opened.content_type == "application/octet-stream"


def test_head_under_waitress_stays_bodiless(waitress_url: str) -> None:
    """A HEAD answer under waitress carries its seal in the header and no body."""
    with requests.Session() as session:
        call = send(session, waitress_url + "/echo", method="HEAD", content_type=None)
    assert call.response.status_code == 200
    assert call.response.content == b""
    assert open_reply(call).body == b""

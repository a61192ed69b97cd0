"""Fuzz the middleware with hostile requests: it refuses, and only verified requests pass."""

from __future__ import annotations

import io
import json
from typing import Any, Optional

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from support.inprocess import run
from support.seal import SEAL_FIELDS, replace_seal_field
from support.sealing import keyring
from werkzeug.test import EnvironBuilder

from mscomm_sync.envelope import ENVELOPE_HEADERS, HEADER_SEAL, Envelope
from mscomm_sync.replay import MemoryReplayStore
from mscomm_sync.wsgi import EncryptionMiddleware

PLAINTEXT = b'{"card": "PLAINTEXT-MARKER-4242"}'
REFUSALS = {
    400: b'{"error": "bad request"}',
    401: b'{"error": "unauthorized"}',
    403: b'{"error": "forbidden"}',
    413: b'{"error": "payload too large"}',
}
RING = keyring()
METHODS = ["GET", "POST", "PUT", "DELETE", "HEAD", "PATCH", "OPTIONS", "post", "X" * 40, ""]
PATHS = ["/charge", "/", "/health", "/a b", "/caf\u00e9", "/%00", "//x", "/charge?x=1"]
HUGE = "A" * 100_000

header_value = st.one_of(
    st.just(None),
    st.just("real"),
    st.text(max_size=40),
    st.text(alphabet="0123456789abcdef", min_size=16, max_size=32),
    st.sampled_from(["true", "TRUE", "1", "orders", "billing", "-1", HUGE]),
)
content_length = st.one_of(
    st.just("real"),
    st.just(None),
    st.integers(min_value=-5, max_value=10**6).map(str),
    st.sampled_from(["", "abc", "1e3", " 12", "99999999999999999999999", HUGE]),
)


class Recorder:
    """An app that records what reached it."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        body = environ["wsgi.input"].read()
        self.calls.append(
            {
                "caller": environ.get("mscomm.caller"),
                "body": body,
                "method": environ["REQUEST_METHOD"],
            }
        )
        start_response("200 OK", [("Content-Type", "application/json")])
        return [body]


def resolve(real: dict[str, str], name: str, value: Any) -> str:
    """Return the header to send: the real one, the real seal with one field changed, or value."""
    if value == "real":
        return real[name]
    if isinstance(value, tuple):
        _, field, new = value
        return (
            real[HEADER_SEAL]
            if new == "real"
            else replace_seal_field(real[HEADER_SEAL], field, new)
        )
    return str(value)


@settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None
)
@given(
    method=st.one_of(st.just("POST"), st.sampled_from(METHODS)),
    path=st.one_of(
        st.just("/charge"), st.sampled_from(PATHS), st.text(max_size=30).map(lambda p: "/" + p)
    ),
    headers=st.one_of(
        st.fixed_dictionaries({name: header_value for name in ENVELOPE_HEADERS}),
        # A real seal with at most one header changed: near misses.
        st.builds(
            lambda name, value: {**{h: "real" for h in ENVELOPE_HEADERS}, **dict([(name, value)])},
            st.sampled_from(ENVELOPE_HEADERS),
            st.one_of(st.just("real"), header_value),
        ),
        # A real seal with one field of the seal header changed: nearer misses.
        st.builds(
            lambda field, value: {
                **{h: "real" for h in ENVELOPE_HEADERS},
                HEADER_SEAL: ("field", field, value),
            },
            st.sampled_from(SEAL_FIELDS),
            st.one_of(header_value.filter(lambda v: v is not None), st.sampled_from(["0", "2"])),
        ),
    ),
    extra=st.dictionaries(
        st.sampled_from(["Transfer-Encoding", "Content-Type", "X-Request-Id", "Content-Encoding"]),
        st.one_of(st.just("chunked"), st.text(max_size=20), st.just(HUGE)),
        max_size=3,
    ),
    body=st.one_of(st.just("real"), st.binary(max_size=300), st.just(b"\0" * 5000)),
    length=st.one_of(st.just("real"), content_length),
    terminated=st.booleans(),
    allowed=st.sampled_from([None, ["shipping"], ["orders"]]),
)
def test_hostile_requests_are_refused_unless_verified(
    method: str,
    path: str,
    headers: dict[str, Any],
    extra: dict[str, str],
    body: Any,
    length: Optional[str],
    terminated: bool,
    allowed: Optional[list[str]],
) -> None:
    """Any request is refused with 400/401/403/413 and a fixed body, unless it truly verifies."""
    real = Envelope("orders", keyring=RING).seal_request(
        recipient="billing", method="POST", target="/charge", body=PLAINTEXT
    )
    app = Recorder()
    middleware = EncryptionMiddleware(
        app,
        "billing",
        keyring=RING,
        replay_store=MemoryReplayStore(),
        exempt_paths=(),
        allowed_callers=allowed,
        max_body_size=4096,
    )
    sent_headers = {
        name: resolve(real.headers, name, value)
        for name, value in headers.items()
        if value is not None
    }
    sent_headers.update(extra)
    data = real.body if body == "real" else body
    environ = EnvironBuilder(path="/", method="GET").get_environ()
    for name, value in sent_headers.items():
        key = name.upper().replace("-", "_")
        environ[key if key == "CONTENT_TYPE" else "HTTP_" + key] = value
    environ.update(REQUEST_METHOD=method, PATH_INFO=path.split("?")[0])
    environ["QUERY_STRING"] = path.split("?", 1)[1] if "?" in path else ""
    environ["wsgi.input"] = io.BytesIO(data)
    environ.pop("CONTENT_LENGTH", None)
    if length == "real":
        environ["CONTENT_LENGTH"] = str(len(data))
    elif length is not None:
        environ["CONTENT_LENGTH"] = length
    if terminated:
        environ["wsgi.input_terminated"] = True

    status, out_headers, out_body = run(middleware, environ)

    event(f"status {status}")
    assert status != 500
    assert b"PLAINTEXT-MARKER" not in out_body
    if app.calls:
        # Only a request identical to the real seal may get through, once.
        # The envelope binds the method upper-cased; the app sees that verified form.
        assert app.calls == [{"caller": "orders", "body": PLAINTEXT, "method": "POST"}]
        assert sent_headers[HEADER_SEAL] == real.headers[HEADER_SEAL]
        assert (method.upper(), environ["PATH_INFO"], environ["QUERY_STRING"]) == (
            "POST",
            "/charge",
            "",
        )
        assert out_headers["X-Encrypted-Payload"] == "true"
        assert status == 200
        assert allowed != ["shipping"]
    else:
        assert status in REFUSALS
        assert out_body == REFUSALS[status]
        assert "X-Encrypted-Payload" not in out_headers
        assert json.loads(out_body)["error"]


@settings(max_examples=200, deadline=None, database=None)
@given(index=st.integers(min_value=0), flip=st.integers(min_value=1, max_value=255))
def test_any_flipped_byte_of_a_sealed_body_is_401(index: int, flip: int) -> None:
    """Changing any byte of a valid sealed body gets 401 and never reaches the app."""
    real = Envelope("orders", keyring=RING).seal_request(
        recipient="billing", method="POST", target="/charge", body=PLAINTEXT
    )
    app = Recorder()
    middleware = EncryptionMiddleware(
        app, "billing", keyring=RING, replay_store=MemoryReplayStore()
    )
    data = bytearray(real.body)
    data[index % len(data)] ^= flip
    environ = EnvironBuilder(
        path="/charge", method="POST", headers=list(real.headers.items()), data=bytes(data)
    ).get_environ()
    status, _, body = run(middleware, environ)
    assert (status, body, app.calls) == (401, REFUSALS[401], [])


def test_app_sees_the_verified_method_in_upper_case() -> None:
    """A sealed POST arriving as "post" verifies (methods bind upper-cased); the app sees POST."""
    real = Envelope("orders", keyring=RING).seal_request(
        recipient="billing", method="POST", target="/charge", body=PLAINTEXT
    )
    app = Recorder()
    middleware = EncryptionMiddleware(
        app, "billing", keyring=RING, replay_store=MemoryReplayStore()
    )
    environ = EnvironBuilder(
        path="/charge", method="POST", headers=list(real.headers.items()), data=real.body
    ).get_environ()
    environ["REQUEST_METHOD"] = "post"
    status, _, _ = run(middleware, environ)
    assert (status, app.calls) == (200, [{"caller": "orders", "body": PLAINTEXT, "method": "POST"}])

"""Tests for mscomm_sync.wsgi.log: refusals are logged bounded and printable, without data."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from mscomm_sync.wsgi.log import log_app_failure, log_refusal, request_id, route

KID = "0123456789abcdef"
MID = "00112233445566778899aabbccddeeff"
SEAL = f"v=1;kid={KID};ts=1700000000;id={MID};ct={'ab' * 16}"


def environ(**changes: Any) -> dict[str, Any]:
    """A refused sealed POST to /charge?card=4111-secret, with some keys changed."""
    env: dict[str, Any] = {
        "REQUEST_METHOD": "POST",
        "SCRIPT_NAME": "",
        "PATH_INFO": "/charge",
        "QUERY_STRING": "card=4111-secret",
        "HTTP_X_ENCRYPTION_SERVICE": "orders",
        "HTTP_X_MSCOMM_SEAL": SEAL,
        "HTTP_X_REQUEST_ID": "req-7",
    }
    env.update(changes)
    return {k: v for k, v in env.items() if v is not None}


@pytest.fixture
def logged(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """caplog, capturing the middleware's logger from WARNING up (restored afterwards)."""
    caplog.set_level(logging.WARNING, logger="mscomm_sync.wsgi")
    return caplog


def records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """Return what was logged to mscomm_sync.wsgi."""
    return [r for r in caplog.records if r.name == "mscomm_sync.wsgi"]


def only_message(caplog: pytest.LogCaptureFixture) -> str:
    """Return the one message logged to mscomm_sync.wsgi."""
    ours = records(caplog)
    assert len(ours) == 1, [r.getMessage() for r in ours]
    return ours[0].getMessage()


# -- log_refusal -------------------------------------------------------------------------


def test_a_refusal_is_one_warning_with_status_reason_and_claims(
    logged: pytest.LogCaptureFixture,
) -> None:
    """A refusal logs one WARNING naming status, reason, claimed sender, kid, id, route and
    request id."""
    log_refusal(401, "verification failed: bad tag", environ())
    [record] = records(logged)
    assert record.levelno == logging.WARNING
    assert record.getMessage() == (
        f"refused 401: verification failed: bad tag (sender='orders' kid='{KID}' id='{MID}' "
        "route=POST /charge request_id=req-7)"
    )


def test_the_query_string_is_never_logged(logged: pytest.LogCaptureFixture) -> None:
    """The route is the path alone: the query, which may carry data, is left out."""
    log_refusal(401, "plaintext request", environ())
    message = only_message(logged)
    assert "/charge" in message
    assert "4111" not in message and "card" not in message


def test_a_verified_sender_and_id_replace_the_claimed_ones(
    logged: pytest.LogCaptureFixture,
) -> None:
    """After verification, the verified sender and message id are logged, not the headers'."""
    verified = "ffeeddccbbaa99887766554433221100"
    log_refusal(403, "caller not allowed", environ(), sender="shipping", message_id=verified)
    message = only_message(logged)
    assert f"sender='shipping' kid='{KID}' id='{verified}'" in message
    assert "orders" not in message and MID not in message


def test_malformed_claimed_ids_are_logged_as_none(logged: pytest.LogCaptureFixture) -> None:
    """A seal header whose kid or id is not exactly hex of the right length logs neither."""
    seal = "v=1;kid=FORGED\nLINE;ts=1;id=%(x)s;ct=zz"
    log_refusal(401, "verification failed: malformed envelope", environ(HTTP_X_MSCOMM_SEAL=seal))
    message = only_message(logged)
    assert "kid=None id=None" in message
    assert "FORGED" not in message and "%(x)s" not in message


def test_missing_claims_are_logged_as_none(logged: pytest.LogCaptureFixture) -> None:
    """Without sender, seal, method or request id headers, each is logged as None."""
    log_refusal(
        401,
        "plaintext request",
        environ(
            HTTP_X_ENCRYPTION_SERVICE=None,
            HTTP_X_MSCOMM_SEAL=None,
            HTTP_X_REQUEST_ID=None,
            REQUEST_METHOD=None,
        ),
    )
    message = only_message(logged)
    assert "(sender=None kid=None id=None route=None /charge request_id=None)" in message


def test_a_long_claimed_sender_is_cut_to_128_characters(
    logged: pytest.LogCaptureFixture,
) -> None:
    """An unverified sender header is logged at most 128 characters long."""
    log_refusal(401, "malformed sender", environ(HTTP_X_ENCRYPTION_SERVICE="s" * 5000))
    message = only_message(logged)
    assert f"sender='{'s' * 128}'" in message
    assert "s" * 129 not in message


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("HTTP_X_ENCRYPTION_SERVICE", "orders\nrefused 200: all good (sender='admin')"),
        ("REQUEST_METHOD", "GET\r\nINFO forged line"),
        ("HTTP_X_ENCRYPTION_SERVICE", "orders\x1b[2J\x00"),
    ],
    ids=["sender-newline", "method-crlf", "sender-escape"],
)
def test_unprintable_claims_cannot_forge_log_lines(
    logged: pytest.LogCaptureFixture, key: str, value: str
) -> None:
    """A claimed value with line breaks or control characters is logged escaped, on one line."""
    log_refusal(401, "malformed sender", environ(**{key: value}))
    message = only_message(logged)
    assert "\n" not in message and "\r" not in message
    assert "\x1b" not in message and "\x00" not in message


def test_an_unprintable_claim_is_cut_to_64_characters(logged: pytest.LogCaptureFixture) -> None:
    """An unprintable claimed value is logged as the repr of its first 64 characters."""
    claimed = "\n" + "x" * 500
    log_refusal(401, "malformed sender", environ(HTTP_X_ENCRYPTION_SERVICE=claimed))
    message = only_message(logged)
    assert repr(repr(claimed[:64])) in message
    assert "x" * 64 not in message


def test_the_route_of_an_unprintable_path_is_escaped(logged: pytest.LogCaptureFixture) -> None:
    """The logged route is the canonical path, so a line break in it is %0A."""
    log_refusal(401, "plaintext request", environ(PATH_INFO="/a\nforged"))
    assert "route=POST /a%0Aforged " in only_message(logged)


def test_nothing_is_logged_or_read_when_warnings_are_off(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """With WARNING disabled on the logger, a refusal logs nothing and reads no header."""

    class Untouchable(Mapping[str, Any]):
        def __getitem__(self, key: str) -> Any:
            raise AssertionError(f"read {key}")

        def __iter__(self) -> Iterator[str]:
            raise AssertionError("iterated")

        def __len__(self) -> int:
            raise AssertionError("measured")

    with caplog.at_level(logging.ERROR, logger="mscomm_sync.wsgi"):
        log_refusal(401, "plaintext request", Untouchable())
    assert records(caplog) == []


# -- request_id and route ---------------------------------------------------------------------


@pytest.mark.parametrize("value", ["req-7", "a", "x" * 128, "0f6c!~{}[]:;<>@"])
def test_a_sane_request_id_is_kept(value: str) -> None:
    """1 to 128 printable ASCII characters without spaces are the request id as sent."""
    assert request_id({"HTTP_X_REQUEST_ID": value}) == value


@pytest.mark.parametrize(
    "value",
    ["", "x" * 129, "req 7", "req-7\n", "req-7\r\nX-Evil: 1", "réq", "\x00", "tab\there"],
    ids=["empty", "too-long", "space", "newline", "crlf", "non-ascii", "nul", "tab"],
)
def test_any_other_request_id_is_invalid(value: str) -> None:
    """Anything but 1 to 128 printable ASCII characters is logged as <invalid>, not as sent."""
    assert request_id({"HTTP_X_REQUEST_ID": value}) == "<invalid>"


def test_no_request_id_is_none() -> None:
    """Without an X-Request-Id header the request id is None."""
    assert request_id({}) is None


def test_route_is_the_canonical_path_without_query() -> None:
    """route() is SCRIPT_NAME + PATH_INFO made canonical, the query dropped."""
    env = {"SCRIPT_NAME": "/api", "PATH_INFO": "/caf\xc3\xa9 x", "QUERY_STRING": "q=1"}
    assert route(env) == "/api/caf%C3%A9%20x"


def test_route_is_bounded() -> None:
    """A huge path is logged as its first 256 characters."""
    assert route({"PATH_INFO": "/" + "p" * 10_000}) == "/" + "p" * 255


# -- log_app_failure ----------------------------------------------------------------------------


def test_an_app_failure_is_logged_with_its_traceback_and_no_query(
    logged: pytest.LogCaptureFixture,
) -> None:
    """A failure answering a verified request is logged at ERROR with the traceback, the
    verified sender and id, the route without its query and the request id."""
    try:
        raise RuntimeError("boom-marker")
    except RuntimeError:
        log_app_failure("app failed", environ(), "orders", MID)
    [record] = records(logged)
    assert record.levelno == logging.ERROR
    assert record.getMessage() == (
        f"app failed (sender='orders' id={MID} route=POST /charge request_id=req-7)"
    )
    assert record.exc_info is not None and "boom-marker" in str(record.exc_info[1])

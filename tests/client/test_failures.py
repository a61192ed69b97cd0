"""Tests for mscomm_sync.client.failures: a transport failure, translated once."""

from __future__ import annotations

import socket

import pytest
import requests
from urllib3.exceptions import (
    ConnectTimeoutError,
    MaxRetryError,
    NameResolutionError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
)

from mscomm_sync.client.failures import AttemptFailed
from mscomm_sync.errors import MscommError


def wrapped(reason: BaseException, kind: type = requests.ConnectionError) -> Exception:
    exc: Exception = kind(MaxRetryError(None, "/x", reason))  # type: ignore[arg-type]
    return exc


def new_connection_error(cause: BaseException) -> NewConnectionError:
    error = NewConnectionError(None, "Failed to establish a new connection")  # type: ignore[arg-type]
    error.__cause__ = cause
    return error


def test_a_refused_connection_never_left_and_ran_nothing() -> None:
    failed = AttemptFailed.from_requests(
        wrapped(new_connection_error(ConnectionRefusedError(111, "refused")))  # type: ignore[arg-type]
    )
    assert (failed.reason, failed.refused, failed.connect_phase, failed.not_run) == (
        "connection refused",
        True,
        True,
        True,
    )
    assert isinstance(failed, MscommError)


def test_a_connect_timeout_never_left_but_is_not_a_refusal() -> None:
    failed = AttemptFailed.from_requests(
        wrapped(ConnectTimeoutError(None, "timed out"), requests.ConnectTimeout)  # type: ignore[arg-type]
    )
    assert (failed.reason, failed.refused, failed.connect_phase) == ("ConnectTimeout", False, True)


def test_a_failed_name_lookup_never_left() -> None:
    lookup = NameResolutionError("nohost", None, socket.gaierror(-2, "unknown"))  # type: ignore[arg-type]
    failed = AttemptFailed.from_requests(wrapped(lookup))  # type: ignore[arg-type]
    assert (failed.connect_phase, failed.refused) == (True, False)


@pytest.mark.parametrize(
    "exc",
    [
        requests.ConnectionError(ProtocolError("aborted", ConnectionResetError(104, "reset"))),
        requests.ReadTimeout(ReadTimeoutError(None, "/x", "read timed out")),  # type: ignore[arg-type]
    ],
)
def test_anything_after_connecting_may_have_reached_the_service(exc: Exception) -> None:
    failed = AttemptFailed.from_requests(exc)  # type: ignore[arg-type]
    assert (failed.connect_phase, failed.refused, failed.not_run) == (False, False, False)


def test_a_body_that_broke_off_names_what_broke() -> None:
    inner = ProtocolError("Connection broken", ConnectionResetError(104, "reset"))
    assert AttemptFailed.mid_answer(inner).reason == "ConnectionResetError"
    assert AttemptFailed.mid_answer(TimeoutError()).reason == "TimeoutError"
    assert AttemptFailed.mid_answer(OSError(), "ReadTimeout").reason == "ReadTimeout"


def test_not_executed_may_always_be_repeated() -> None:
    failed = AttemptFailed.not_executed(RuntimeError("503"), retry_after=2.0)
    assert (failed.not_run, failed.connect_phase, failed.retry_after) == (True, False, 2.0)
    assert "not_run=True" in repr(failed)

"""Tests for mscomm_sync.envelope.rejection: one opaque error out, the reason to the log."""

from __future__ import annotations

import logging

import pytest

from mscomm_sync.envelope.headers import SealFields
from mscomm_sync.envelope.messages import RESPONSE, Binding
from mscomm_sync.envelope.rejection import reject
from mscomm_sync.errors import IntegrityError, MscommError


def test_every_reason_gives_the_same_message(caplog: pytest.LogCaptureFixture) -> None:
    """The sender of a bad message cannot tell one reason from another by the error."""
    caplog.set_level(logging.INFO, "mscomm_sync.envelope")
    errors = [reject(reason, None, None, sender="orders") for reason in ("bad tag", "replay")]
    assert all(isinstance(e, IntegrityError) and isinstance(e, MscommError) for e in errors)
    assert str(errors[0]) == str(errors[1])
    assert [e.reason for e in errors] == ["bad tag", "replay"]  # a field, for this side's code
    assert [r.getMessage().split(": ")[1].split(" (")[0] for r in caplog.records] == [
        "bad tag",
        "replay",
    ]


def test_the_log_record_carries_structured_fields(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "mscomm_sync.envelope")
    fields = SealFields("1", "0123456789abcdef", "1700000000", "ab" * 16, "")
    binding = Binding._make(RESPONSE, "billing", "orders", "POST", "/x", "200", "cd" * 16)
    reject("stale timestamp", binding, fields)
    (record,) = caplog.records
    assert record.levelno == logging.INFO
    assert vars(record)["mscomm.direction"] == RESPONSE
    assert vars(record)["mscomm.caller"] == "billing"
    assert vars(record)["mscomm.kid"] == "0123456789abcdef"
    assert vars(record)["mscomm.message_id"] == "ab" * 16
    assert vars(record)["mscomm.reason"] == "stale timestamp"


def test_an_overlong_claimed_sender_is_not_repeated(caplog: pytest.LogCaptureFixture) -> None:
    """A name no service can have is left out of the line and the error (log flooding)."""
    caplog.set_level(logging.INFO, "mscomm_sync.envelope")
    error = reject("malformed sender", None, None, sender="x" * 10_000)
    assert error.service is None
    assert "xxxx" not in caplog.text

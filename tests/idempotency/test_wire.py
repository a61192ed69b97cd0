"""Tests for mscomm_sync.idempotency.wire: what a key looks like on the wire."""

from __future__ import annotations

import pytest

from mscomm_sync.errors import ConfigurationError
from mscomm_sync.idempotency import wire


@pytest.mark.parametrize(
    "key", ["order-42", "a", "x" * wire.MAX_KEY_LENGTH, "550e8400-e29b-41d4-a716-446655440000"]
)
def test_valid_keys(key: str) -> None:
    assert wire.valid_key(key) and wire.validate_key(key) == key


@pytest.mark.parametrize(
    "key", ["", "has space", "x" * (wire.MAX_KEY_LENGTH + 1), "tab\t", "é", "new\nline", b"b", 7]
)
def test_invalid_keys_are_refused_without_quoting_them(key: object) -> None:
    assert not wire.valid_key(key)
    with pytest.raises(ConfigurationError) as info:
        wire.validate_key(key)  # type: ignore[arg-type]
    assert (info.value.variable, info.value.reason) == (
        "idempotency_key",
        "invalid idempotency key",
    )
    if isinstance(key, str) and key:
        assert key not in str(info.value)


def test_no_key_is_no_key() -> None:
    assert wire.validate_key(None) is None


def test_every_state_is_distinct() -> None:
    states = [getattr(wire, n) for n in wire.__all__ if n.isupper() and n.startswith(
        ("KEPT", "NOT_KEPT", "RELEASED", "KEEP_NONE", "REPLAYED", "IN_PROGRESS", "KEY_REUSED",
         "ANSWER_NOT_KEPT", "INVALID_KEY", "UNAVAILABLE"))]  # fmt: skip
    assert len(states) == len(set(states)) == 10

"""Tests for mscomm_sync.envelope.limits: the allowances match what sealing really adds."""

from __future__ import annotations

import pytest
from support.fleet import Fleet

from mscomm_sync.envelope import DEFAULT_MAX_BODY_SIZE, Envelope, limits
from mscomm_sync.errors import ConfigurationError
from mscomm_sync.keyring import Keyring, generate_key


def test_a_v1_body_grows_by_exactly_one_tag() -> None:
    ring = Keyring.from_mapping({"orders": generate_key(), "billing": generate_key()})
    sealed = Envelope("orders", keyring=ring, versions={"1"}).seal_request(
        recipient="billing", method="POST", target="/x", body=b"a" * 1000
    )
    assert len(sealed.body) - 1000 == limits.TAG_BYTES == limits.sealing_overhead("1")


def test_a_v2_body_with_the_most_headers_stays_within_its_overhead() -> None:
    fleet = Fleet("orders", "billing")
    orders = fleet.envelope("orders", "billing")
    # As many sealed header bytes as the section admits, in 1 KiB values.
    headers = [(f"x-h{n}", "v" * 1000) for n in range(limits.MAX_SEALED_HEADERS // 1010)]
    sealed = orders.seal_request(
        recipient="billing", method="POST", target="/x", body=b"a" * 1000, headers=headers
    )
    grown = len(sealed.body) - 1000
    assert sum(len(v) for _, v in headers) < grown <= limits.sealing_overhead("2")
    assert limits.sealing_overhead("2") == limits.SEALING_OVERHEAD


def test_the_package_exports_the_same_constants() -> None:
    assert DEFAULT_MAX_BODY_SIZE is limits.DEFAULT_MAX_BODY_SIZE


def test_more_headers_than_the_receiver_allows_are_never_sealed() -> None:
    orders = Fleet("orders", "billing").envelope("orders", "billing")
    headers = [(f"x-h{n}", "v" * 1000) for n in range(limits.MAX_SEALED_HEADERS // 1000 + 1)]
    with pytest.raises(ConfigurationError) as info:
        orders.seal_request(recipient="billing", method="POST", target="/x", headers=headers)
    assert info.value.reason == "headers too large"

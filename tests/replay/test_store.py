"""Tests for mscomm_sync.replay.store: the protocol, and from when a store can vouch."""

from __future__ import annotations

import pytest

from mscomm_sync.envelope import Envelope, Opened
from mscomm_sync.errors import ReplayGapError
from mscomm_sync.keyring import Keyring, generate_key
from mscomm_sync.replay import MemoryReplayStore, ReplayStore

SEALED_AT = 1_700_000_000
RING = Keyring.from_mapping({"orders": generate_key(), "billing": generate_key()})


class Forgetful:
    """A store of one's own, without ``not_before``."""

    def add(self, key: str, expires_at: float) -> bool:
        return True


def open_with(store: object) -> Opened:
    """Open, 20 seconds later, a request sealed at SEALED_AT, with ``store`` as replay store."""
    sender = Envelope("orders", keyring=RING, clock=lambda: SEALED_AT)
    sealed = sender.seal_request(recipient="billing", method="POST", target="/x", body=b"")
    billing = Envelope(
        "billing",
        keyring=RING,
        replay_store=store,  # type: ignore[arg-type]
        clock=lambda: SEALED_AT + 20,
    )
    return billing.open_request(
        method="POST", target="/x", headers=sealed.headers, body=sealed.body
    )


def test_a_store_without_not_before_remembers_everything() -> None:
    """A store that does not say when it began is taken to remember every id it was given."""
    assert isinstance(Forgetful(), ReplayStore)
    assert open_with(Forgetful()).sender == "orders"


def test_a_store_with_not_before_is_believed() -> None:
    """A message sealed before the store's not_before is refused as a gap, naming it."""
    store = MemoryReplayStore(clock=lambda: SEALED_AT + 10.5)
    assert store.not_before == SEALED_AT + 10
    with pytest.raises(ReplayGapError) as gap:
        open_with(store)
    assert gap.value.not_before == SEALED_AT + 10
    assert open_with(MemoryReplayStore(clock=lambda: SEALED_AT + 0.5)).sender == "orders"

"""Tests for mscomm_sync.replay.store: the protocol, and from when a store can vouch."""

from __future__ import annotations

import math

from mscomm_sync.replay import MemoryReplayStore, ReplayStore
from mscomm_sync.replay.store import remembers_since


class Forgetful:
    """A store of one's own, without ``not_before``."""

    def add(self, key: str, expires_at: float) -> bool:
        return True


def test_a_store_without_not_before_remembers_everything() -> None:
    assert isinstance(Forgetful(), ReplayStore)
    assert remembers_since(Forgetful()) == -math.inf


def test_a_store_with_not_before_is_believed() -> None:
    store = MemoryReplayStore(clock=lambda: 1_700_000_000.5)
    assert remembers_since(store) == store.not_before == 1_700_000_000

"""Tests for mscomm_sync.replay.default: which store, and which file, serve when none is given."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mscomm_sync import ShmReplayStore
from mscomm_sync.replay import DEFAULT_MAX_ENTRIES, default_replay_path, default_replay_store
from mscomm_sync.replay import default as replay
from mscomm_sync.replay.sqlite import SqliteReplayStore


def test_default_path_comes_from_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """MSCOMM_REPLAY_DB names the default store's file."""
    monkeypatch.setenv("MSCOMM_REPLAY_DB", str(tmp_path / "x.table"))
    assert default_replay_path() == tmp_path / "x.table"
    assert default_replay_store().path == tmp_path / "x.table"


def test_default_store_is_the_shared_memory_table(monkeypatch: pytest.MonkeyPatch) -> None:
    """On POSIX the default store is ShmReplayStore; building it opens nothing."""
    monkeypatch.delenv("MSCOMM_REPLAY_DB", raising=False)
    store = default_replay_store()
    assert isinstance(store, ShmReplayStore)
    assert store.max_entries == DEFAULT_MAX_ENTRIES
    assert store.path.name == f"mscomm-replay-{os.getuid()}.table"


def test_default_store_is_sqlite_where_the_table_cannot_work(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Without fcntl and mmap (not POSIX) the default store falls back to SQLite."""
    monkeypatch.setattr(replay, "_can_map_shared", lambda: False)
    monkeypatch.delenv("MSCOMM_REPLAY_DB", raising=False)
    assert default_replay_path().suffix == ".sqlite3"
    assert isinstance(default_replay_store(), SqliteReplayStore)
    monkeypatch.setenv("MSCOMM_REPLAY_DB", str(tmp_path / "x.sqlite3"))
    assert default_replay_store().path == tmp_path / "x.sqlite3"


def test_default_path_is_on_tmpfs_when_present(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without MSCOMM_REPLAY_DB the table lives in /dev/shm where it exists."""
    monkeypatch.delenv("MSCOMM_REPLAY_DB", raising=False)
    if not os.access("/dev/shm", os.W_OK):
        pytest.skip("no writable /dev/shm here")
    assert default_replay_path().parent == Path("/dev/shm")
    assert default_replay_path().suffix == ".table"


def test_an_empty_variable_is_the_same_as_none(monkeypatch: pytest.MonkeyPatch) -> None:
    """MSCOMM_REPLAY_DB set but empty gives the per-user default, not an empty path."""
    monkeypatch.setenv("MSCOMM_REPLAY_DB", "")
    path = default_replay_path()
    assert path.name == f"mscomm-replay-{os.getuid()}.table"
    assert path.is_absolute()


def test_the_sqlite_fallback_file_is_per_user(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Where the default store is SQLite, its file is mscomm-replay-<uid>.sqlite3."""
    monkeypatch.setattr(replay, "_can_map_shared", lambda: False)
    monkeypatch.delenv("MSCOMM_REPLAY_DB", raising=False)
    assert default_replay_path().name == f"mscomm-replay-{os.getuid()}.sqlite3"


def test_building_the_default_store_creates_no_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The default store opens (and creates) its file only when first used, not when built."""
    monkeypatch.setenv("MSCOMM_REPLAY_DB", str(tmp_path / "x.table"))
    assert default_replay_store().path == tmp_path / "x.table"
    assert list(tmp_path.iterdir()) == []

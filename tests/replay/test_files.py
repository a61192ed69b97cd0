"""Tests for mscomm_sync.replay.files: the checks a host-wide store makes of its file."""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from mscomm_sync.errors import ConfigurationError
from mscomm_sync.replay import REPLAY_DB_ENV
from mscomm_sync.replay.files import open_private_file, store_path

#: The uid and gid of "nobody": an owner that is not the test's user.
NOBODY = 65534


def open_fds() -> set[str]:
    """Return this process's open file descriptors (Linux)."""
    return set(os.listdir("/proc/self/fd"))


@pytest.fixture
def no_umask() -> Iterator[None]:
    """Run with umask 0, so a file's mode is what the code asked for and nothing less."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


# -- store_path ------------------------------------------------------------------------


@pytest.mark.parametrize("kind", [str, Path], ids=["str", "path"])
def test_store_path_returns_a_path(kind: type, tmp_path: Path) -> None:
    """A non-empty str or path-like comes back as a Path to the same file."""
    path = store_path(kind(tmp_path / "replay.table"), 1)
    assert isinstance(path, Path)
    assert path == tmp_path / "replay.table"


def test_an_empty_path_is_refused_naming_the_variable() -> None:
    """An empty path is a configuration error that names MSCOMM_REPLAY_DB."""
    with pytest.raises(ConfigurationError) as raised:
        store_path("", 10)
    assert raised.value.variable == REPLAY_DB_ENV == "MSCOMM_REPLAY_DB"
    assert raised.value.reason == "empty path"


@pytest.mark.parametrize("max_entries", [0, -1])
def test_a_bound_below_one_is_refused(max_entries: int, tmp_path: Path) -> None:
    """max_entries below 1 would refuse every id: it is a configuration error naming it."""
    with pytest.raises(ConfigurationError) as raised:
        store_path(tmp_path / "replay.table", max_entries)
    assert raised.value.variable == "max_entries"
    assert "max_entries" in str(raised.value)


def test_a_bound_of_one_is_accepted(tmp_path: Path) -> None:
    """max_entries=1 is the smallest bound, and a real one."""
    assert store_path(tmp_path / "replay.table", 1) == tmp_path / "replay.table"


# -- open_private_file -----------------------------------------------------------------


def test_a_new_file_is_created_mode_0600(tmp_path: Path, no_umask: None) -> None:
    """The file is created readable and writable by its owner only, whatever the umask."""
    path = tmp_path / "replay.table"
    os.close(open_private_file(path))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_the_file_is_opened_read_write(tmp_path: Path) -> None:
    """The descriptor returned can be written and read back."""
    path = tmp_path / "replay.table"
    fd = open_private_file(path)
    try:
        os.write(fd, b"ids")
        assert os.pread(fd, 3, 0) == b"ids"
    finally:
        os.close(fd)


def test_an_existing_file_of_ours_is_opened_as_it_is(tmp_path: Path) -> None:
    """A file we own is opened without being truncated."""
    path = tmp_path / "replay.table"
    path.write_bytes(b"kept")
    path.chmod(0o600)
    fd = open_private_file(path)
    try:
        assert os.pread(fd, 16, 0) == b"kept"
    finally:
        os.close(fd)


def test_a_symlink_in_place_of_the_file_is_refused(tmp_path: Path) -> None:
    """A symlink planted under the file's name is not followed: opening fails with ELOOP."""
    target = tmp_path / "elsewhere"
    target.write_bytes(b"victim")
    planted = tmp_path / "replay.table"
    planted.symlink_to(target)
    with pytest.raises(OSError) as raised:
        open_private_file(planted)
    assert raised.value.errno == errno.ELOOP
    assert target.read_bytes() == b"victim"


def test_a_dangling_symlink_does_not_create_its_target(tmp_path: Path) -> None:
    """A symlink to a missing file is refused too, and nothing is created where it points."""
    target = tmp_path / "would-be-created"
    planted = tmp_path / "replay.table"
    planted.symlink_to(target)
    with pytest.raises(OSError) as raised:
        open_private_file(planted)
    assert raised.value.errno == errno.ELOOP
    assert not target.exists()


def test_a_file_of_another_user_is_refused(tmp_path: Path) -> None:
    """A file owned by someone else is refused, naming MSCOMM_REPLAY_DB, and not left open."""
    if not hasattr(os, "getuid") or os.getuid() != 0:
        pytest.skip("simulating another user's file needs root (to chown it)")
    path = tmp_path / "replay.table"
    path.touch(mode=0o600)
    os.chown(path, NOBODY, NOBODY)
    before = open_fds()
    with pytest.raises(ConfigurationError) as raised:
        open_private_file(path)
    assert (raised.value.variable, raised.value.reason) == (REPLAY_DB_ENV, "foreign owner")
    assert REPLAY_DB_ENV in str(raised.value)
    assert open_fds() == before


def test_a_directory_is_refused(tmp_path: Path) -> None:
    """A directory under the file's name cannot be opened as the store's file."""
    with pytest.raises(OSError):
        open_private_file(tmp_path)

"""Temporary files of crashed writers: the next write removes them, and nothing else."""

from __future__ import annotations

import json
import logging
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from mscomm_sync.errors import RegistryError
from mscomm_sync.registry import FileRegistry

StartWriter = Callable[[Path], subprocess.Popen[bytes]]


def temporaries(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.name.endswith(".tmp"))


def crash_mid_write(registry_path: Path, stopped_writer: StartWriter) -> Path:
    """Kill (SIGKILL) a real writer between writing its temporary file and renaming it."""
    writer = stopped_writer(registry_path)
    writer.kill()
    writer.wait(timeout=60)
    [orphan] = temporaries(registry_path.parent)
    return orphan


def test_a_crashed_writer_leaves_its_full_temporary_file(
    registry_path: Path, stopped_writer: StartWriter
) -> None:
    """The setting works: a writer killed before its rename leaves a complete .tmp copy."""
    orphan = crash_mid_write(registry_path, stopped_writer)
    assert orphan.name.startswith(".registry.json.")
    assert "stopped" in json.loads(orphan.read_text())["services"]
    assert not registry_path.exists()


@pytest.mark.reliability
def test_the_next_write_removes_a_crashed_writers_temporary_file(
    registry_path: Path, stopped_writer: StartWriter
) -> None:
    """After a crash, one write leaves only the registry and its lock file."""
    crash_mid_write(registry_path, stopped_writer)
    with FileRegistry(registry_path) as registry:
        registry.register("billing", "http://127.0.0.1:8001")
        assert registry.services() == ["billing"]
    names = sorted(p.name for p in registry_path.parent.iterdir())
    assert names == ["registry.json", "registry.json.lock"]


def test_removal_is_logged(
    registry_path: Path, stopped_writer: StartWriter, caplog: pytest.LogCaptureFixture
) -> None:
    """Removing orphans logs one line naming the registry file."""
    crash_mid_write(registry_path, stopped_writer)
    with caplog.at_level(logging.INFO, logger="mscomm_sync.registry"):
        FileRegistry(registry_path).register("billing", "http://127.0.0.1:8001")
    lines = [r.getMessage() for r in caplog.records if "crashed writers" in r.getMessage()]
    assert lines == [f"removed 1 temporary file(s) left beside {registry_path} by crashed writers"]


def test_only_files_named_like_the_registrys_temporaries_are_removed(registry_path: Path) -> None:
    """Other files, other registries' temporaries and directories stay untouched."""
    directory = registry_path.parent
    orphan = directory / ".registry.json.abc_1234.tmp"
    keep = [
        directory / ".registry.json.backup.tmp",  # not 8 random characters
        directory / "registry.json.abcdefgh.tmp",  # no leading dot
        directory / ".other.json.abcdefgh.tmp",  # another registry in the same directory
        directory / ".registry.json.abcdefgh.tmp.old",
    ]
    for path in [orphan, *keep]:
        path.write_text("{}")
    (directory / ".registry.json.zzzzzzzz.tmp").mkdir()
    FileRegistry(registry_path).register("billing", "http://127.0.0.1:8001")
    assert not orphan.exists()
    assert all(path.exists() for path in keep)
    assert (directory / ".registry.json.zzzzzzzz.tmp").is_dir()


def test_a_live_writers_temporary_file_is_not_removed(
    registry_path: Path, stopped_writer: StartWriter
) -> None:
    """While a writer holds the lock, another write cannot reach its temporary file."""
    writer = stopped_writer(registry_path)
    [live] = temporaries(registry_path.parent)
    with pytest.raises(RegistryError, match="lock"):
        FileRegistry(registry_path, lock_timeout=0).register("billing", "http://127.0.0.1:8001")
    assert live.exists()
    writer.kill()
    writer.wait(timeout=60)

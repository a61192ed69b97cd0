"""The JSON file backend: format, atomic locked writes, change detection, corruption."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from mscomm_sync.errors import RegistryError
from mscomm_sync.registry import FileRegistry
from mscomm_sync.registry.fileformat import SCHEMA_VERSION, empty_document


def test_reading_a_missing_file_creates_nothing(tmp_path: Path) -> None:
    """Opening and reading a missing registry reads as empty and creates no file or directory."""
    path = tmp_path / "sub" / "registry.json"
    with FileRegistry(path) as registry:
        assert registry.get_instances("billing") == []
        assert (registry.services(), registry.instances()) == ([], [])
        registry.refresh()
        assert registry.exists is False
    assert list(tmp_path.iterdir()) == []


def test_first_registration_creates_a_versioned_document(registry_path: Path) -> None:
    """The first write creates the file, holding the schema version and the instance."""
    with FileRegistry(registry_path) as registry:
        registry.register("billing", "http://127.0.0.1:8001")
        assert registry.exists is True
    doc = json.loads(registry_path.read_text())
    assert doc["schema"] == SCHEMA_VERSION
    assert list(doc["services"]) == ["billing"]


def test_a_file_created_after_opening_is_picked_up(registry_path: Path) -> None:
    """A registry opened on a missing file sees the instances another object writes later."""
    with FileRegistry(registry_path) as reader, FileRegistry(registry_path) as writer:
        assert reader.get_instances("billing") == []
        writer.register("billing", "http://127.0.0.1:8001")
        assert [i.url for i in reader.get_instances("billing")] == ["http://127.0.0.1:8001"]


def test_write_into_a_missing_directory_is_refused(tmp_path: Path) -> None:
    """A write whose directory does not exist raises 'missing directory' and creates nothing."""
    path = tmp_path / "typo" / "registry.json"
    with pytest.raises(RegistryError) as info:
        FileRegistry(path).register("billing", "http://127.0.0.1:8001")
    assert (info.value.reason, info.value.location) == ("missing directory", str(path))
    assert str(path.parent) in str(info.value) and "create_parents" in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_create_parents_lets_a_write_create_the_directories(tmp_path: Path) -> None:
    """With create_parents=True the first write creates the missing directories and the file."""
    path = tmp_path / "sub" / "dir" / "registry.json"
    FileRegistry(path, create_parents=True).register("billing", "http://127.0.0.1:8001")
    assert json.loads(path.read_text())["services"].keys() == {"billing"}


def test_deregistering_from_a_missing_file_creates_nothing(registry_path: Path) -> None:
    """deregister on a missing file returns False and leaves no file, lock file or directory."""
    assert FileRegistry(registry_path).deregister("billing", "http://127.0.0.1:8001") is False
    assert list(registry_path.parent.iterdir()) == []


def test_deregistering_an_absent_instance_does_not_rewrite_the_file(
    file_registry: FileRegistry, registry_path: Path
) -> None:
    """Removing nothing leaves the file's version (inode and mtime) as it was."""
    file_registry.register("billing", "http://127.0.0.1:8001")
    before = os.stat(registry_path)
    assert file_registry.deregister("billing", "http://127.0.0.1:9999") is False
    after = os.stat(registry_path)
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_creation_leaves_no_temporary_files(registry_path: Path) -> None:
    """Atomic creation and writes leave only the file and its lock file behind."""
    with FileRegistry(registry_path) as registry:
        registry.register("billing", "http://127.0.0.1:8001")
    names = sorted(p.name for p in registry_path.parent.iterdir())
    assert names == ["registry.json", "registry.json.lock"]


def test_file_format_groups_instances_by_service(file_registry: FileRegistry) -> None:
    """The document lists each service's instances with url, endpoint and metadata."""
    file_registry.register("billing", "http://127.0.0.1:8001", metadata={"zone": "a"})
    doc = json.loads(Path(file_registry.path).read_text())
    entry = {
        "url": "http://127.0.0.1:8001",
        "health_endpoint": "/health",
        "metadata": {"zone": "a"},
    }
    assert doc["services"] == {"billing": [entry]}


def test_another_registry_object_sees_a_write(
    file_registry: FileRegistry, registry_path: Path
) -> None:
    """A write through one object is visible to a lookup through another."""
    with FileRegistry(registry_path) as other:
        file_registry.register("billing", "http://127.0.0.1:8001")
        assert [i.url for i in other.get_instances("billing")] == ["http://127.0.0.1:8001"]


def test_unchanged_file_is_not_parsed_again(
    file_registry: FileRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Lookups on an unchanged file never call the parser."""
    file_registry.register("billing", "http://127.0.0.1:8001")
    file_registry.get_instances("billing")
    calls: list[bytes] = []
    import mscomm_sync.registry.file as file_module

    real_decode = file_module.decode
    monkeypatch.setattr(file_module, "decode", lambda data: calls.append(data) or real_decode(data))
    for _ in range(100):
        file_registry.get_instances("billing")
    assert calls == []


def test_replaced_file_with_same_size_and_mtime_is_noticed(
    file_registry: FileRegistry, registry_path: Path
) -> None:
    """A new version with the same size and mtime is still detected, by its inode."""
    file_registry.register("billing", "http://127.0.0.1:8001")
    file_registry.get_instances("billing")
    old = os.stat(registry_path)
    replacement = registry_path.read_text().replace("8001", "8002")
    tmp = registry_path.with_name("replacement.json")
    tmp.write_text(replacement)
    os.utime(tmp, ns=(old.st_atime_ns, old.st_mtime_ns))
    os.replace(tmp, registry_path)
    assert [i.url for i in file_registry.get_instances("billing")] == ["http://127.0.0.1:8002"]


def test_first_read_of_corrupt_file_raises_naming_the_path(registry_path: Path) -> None:
    """Opening a file that is not a registry document raises RegistryError with the path."""
    registry_path.write_text('{"schema": 1, "services": {')
    with pytest.raises(RegistryError) as info:
        FileRegistry(registry_path)
    assert str(registry_path) in str(info.value)
    assert info.value.location == str(registry_path)


def test_unknown_schema_version_is_refused(registry_path: Path) -> None:
    """A document from a newer schema version is refused rather than misread."""
    registry_path.write_text(json.dumps({"schema": SCHEMA_VERSION + 1, "services": {}}))
    with pytest.raises(RegistryError, match="schema"):
        FileRegistry(registry_path)


def test_corrupt_file_keeps_last_good_data_and_warns(
    file_registry: FileRegistry, registry_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """After a half-edited write, lookups keep serving the last good instances and log once."""
    file_registry.register("billing", "http://127.0.0.1:8001")
    registry_path.write_text('{"schema": 1, "services": {"billing": [')
    with caplog.at_level(logging.WARNING, logger="mscomm_sync.registry"):
        for _ in range(3):
            instances = file_registry.get_instances("billing")
    assert [i.url for i in instances] == ["http://127.0.0.1:8001"]
    warnings = [r for r in caplog.records if "unreadable" in r.getMessage()]
    assert len(warnings) == 1


def test_corrupt_file_is_not_overwritten_by_a_write(
    file_registry: FileRegistry, registry_path: Path
) -> None:
    """A write refuses to replace a corrupt file, so a half-finished edit is not lost."""
    registry_path.write_text("not json")
    with pytest.raises(RegistryError):
        file_registry.register("billing", "http://127.0.0.1:8001")
    assert registry_path.read_text() == "not json"


def test_repaired_file_is_picked_up(file_registry: FileRegistry, registry_path: Path) -> None:
    """Once a corrupt file is fixed, lookups serve its new content."""
    registry_path.write_text("not json")
    file_registry.get_instances("billing")
    registry_path.write_text(
        json.dumps({"schema": 1, "services": {"billing": [{"url": "http://127.0.0.1:9"}]}})
    )
    assert [i.url for i in file_registry.get_instances("billing")] == ["http://127.0.0.1:9"]


def test_deleted_file_keeps_last_good_data(
    file_registry: FileRegistry, registry_path: Path
) -> None:
    """If the file disappears, lookups keep the instances last read."""
    file_registry.register("billing", "http://127.0.0.1:8001")
    registry_path.unlink()
    assert len(file_registry.get_instances("billing")) == 1


def test_file_permissions_are_kept_across_writes(
    file_registry: FileRegistry, registry_path: Path
) -> None:
    """Replacing the file keeps the mode an operator set on it."""
    file_registry.register("billing", "http://127.0.0.1:8001")
    os.chmod(registry_path, 0o600)
    file_registry.register("billing", "http://127.0.0.1:8002")
    assert os.stat(registry_path).st_mode & 0o777 == 0o600


_WRITER = """
import sys
from mscomm_sync.registry import FileRegistry
path, worker, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
with FileRegistry(path) as registry:
    for n in range(count):
        registry.register(f"svc-{n % 10}", f"http://127.0.0.1:{10000 + worker * 1000 + n}")
"""


def test_concurrent_writers_lose_nothing_and_readers_never_see_a_torn_file(
    registry_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """8 processes x 100 registrations all land; a reader loop parses every version, unwarned."""
    workers, count = 8, 100
    registry_path.write_bytes(empty_document())
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(registry_path), str(w), str(count)],
            stderr=subprocess.PIPE,
        )
        for w in range(workers)
    ]
    reads = 0
    seen: set[int] = set()  # svc-0 sizes the reader saw: it read while writes went on
    pause = threading.Event()
    deadline = time.monotonic() + 120
    try:
        # A torn or half-written version would make the reader log "unreadable"
        # and keep its last good data: the raw parse alone would miss that.
        with (
            caplog.at_level(logging.WARNING, logger="mscomm_sync.registry"),
            FileRegistry(registry_path) as reader,
        ):
            while any(p.poll() is None for p in procs) and time.monotonic() < deadline:
                json.loads(registry_path.read_bytes())  # raw parse: never torn
                seen.add(len(reader.get_instances("svc-0")))  # never raises, never warns
                reads += 1
                if reads >= 50_000:
                    break
                pause.wait(0.0005)  # leave the writers some CPU on a small machine
    finally:
        errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * workers, errors
    assert reads > 0
    assert len(seen) > 1, "the reader never saw the file change while the writers ran"
    warnings = [
        r.getMessage()
        for r in caplog.records
        if r.name.startswith("mscomm_sync") and r.levelno >= logging.WARNING
    ]
    assert warnings == []
    with FileRegistry(registry_path) as check:
        total = sum(len(check.get_instances(name)) for name in check.services())
    assert total == workers * count

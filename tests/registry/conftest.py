"""Fixtures shared by the registry tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mscomm_sync.registry import FileRegistry, reset_registry


@pytest.fixture(autouse=True)
def _no_default_registry(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """Start every test with no default registry and a private default location."""
    monkeypatch.setenv("MSCOMM_REGISTRY", str(tmp_path / "default-registry.json"))
    reset_registry()
    yield
    reset_registry()


@pytest.fixture
def registry_path(tmp_path: Path) -> Path:
    """A registry file path that does not exist yet."""
    return tmp_path / "registry.json"


@pytest.fixture
def file_registry(registry_path: Path) -> Iterator[FileRegistry]:
    """A fresh file registry, closed after the test."""
    with FileRegistry(registry_path) as registry:
        yield registry

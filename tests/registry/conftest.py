"""Fixtures shared by the registry tests: files, a real etcd, a clean default."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from mscomm_sync.registry import FileRegistry, reset_registry

try:  # how tests/ is importable depends on the pytest entry point
    from tests.support.etcd import EtcdCluster, etcd_cluster
except ImportError:  # pragma: no cover
    from support.etcd import EtcdCluster, etcd_cluster  # type: ignore[no-redef]


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


@pytest.fixture(scope="session")
def etcd_node() -> Iterator[EtcdCluster]:
    """One etcd server shared by the tests of a session (each uses its own prefix)."""
    with etcd_cluster(1) as cluster:
        yield cluster


@pytest.fixture
def private_etcd_node() -> Iterator[EtcdCluster]:
    """A single etcd server for a test that kills it."""
    with etcd_cluster(1) as cluster:
        yield cluster


@pytest.fixture
def etcd_three() -> Iterator[EtcdCluster]:
    """A 3-member etcd cluster for a test that kills a member."""
    with etcd_cluster(3) as cluster:
        yield cluster


@pytest.fixture
def etcd_prefix() -> str:
    """A key prefix no other test uses."""
    return f"/mscomm-test-{uuid.uuid4().hex[:12]}"
